"""Jinja templates of Stan code (installed as the package data `stangen.templates`)."""
