"""Read a spec file: YAML → plain dict, with the line of every key and duplicate keys reported."""
from __future__ import annotations

from pathlib import Path

import yaml

from ..core.errors import Problem, SpecError


def read_yaml(path: str | Path) -> tuple[object, dict[str, int]]:
    """Return (raw value, {spec path: line}). Raises SpecError for unreadable or duplicate-key YAML."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(Problem("", f"cannot read spec file: {exc.strerror or exc}"), source=str(path)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(Problem("", f"not valid YAML: {problem}", line), source=str(path)) from None
    lines: dict[str, int] = {}
    duplicates: list[Problem] = []
    if node is not None:
        _walk(node, "", lines, duplicates)
    if duplicates:
        raise SpecError(duplicates, source=str(path))
    return raw, lines


def _walk(node: yaml.Node, path: str, lines: dict[str, int], duplicates: list[Problem]) -> None:
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            key = str(key_node.value)
            child = f"{path}.{key}" if path else key
            line = key_node.start_mark.line + 1
            if key in seen:
                duplicates.append(Problem(child, f"duplicate key (first given on line {seen[key]})", line))
            seen[key] = line
            lines.setdefault(child, line)
            _walk(value_node, child, lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}[{i}]"
            lines.setdefault(child, item.start_mark.line + 1)
            _walk(item, child, lines, duplicates)


def dump_yaml(data: dict) -> str:
    return yaml.safe_dump(data, sort_keys=False, default_flow_style=None, allow_unicode=True)
