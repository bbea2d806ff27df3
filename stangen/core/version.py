"""stangen's version, where every layer can read it (the report's footer, run records)."""
VERSION = "0.1.0"
