"""Read a spec file: YAML → plain dict, with the line of every key and duplicate keys reported."""
from __future__ import annotations

from pathlib import Path

import yaml

from ..core.errors import Problem, SpecError


# a spec is a few dozen lines: bounds far above any real one, far below what takes a machine down
MAX_BYTES = 1_000_000  # the file
MAX_NODES = 100_000  # values after expanding YAML aliases (a "billion laughs" expands to 10^9)
MAX_DEPTH = 40  # mappings and lists inside one another


def read_yaml(path: str | Path, what: str = "spec file") -> tuple[object, dict[str, int]]:
    """Return (raw value, {spec path: line}). Raises SpecError for unreadable, oversized, too deeply nested,
    self-referencing or duplicate-key YAML, and for aliases that expand beyond MAX_NODES values."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_BYTES:
            raise SpecError(Problem("", f"the {what} has {path.stat().st_size:,} bytes; at most {MAX_BYTES:,}"
                                        + (" (data go in a CSV file: `data:`)" if what == "spec file" else "")),
                            source=str(path))
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(Problem("", f"cannot read {what}: {exc.strerror or exc}"), source=str(path)) from None
    except UnicodeDecodeError as exc:
        raise SpecError(Problem("", f"the {what} is not UTF-8 text ({exc.reason} at byte {exc.start})"),
                        source=str(path)) from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        _bounded(node, str(path))
        raw = yaml.safe_load(text)
    except RecursionError:
        raise SpecError(Problem("", f"the spec is nested too deeply (at most {MAX_DEPTH} levels)"),
                        source=str(path)) from None
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


def _bounded(node: yaml.Node | None, source: str) -> None:
    """Refuse a composed document that references itself, nests deeper than MAX_DEPTH, or expands (through
    aliases, which compose shares as one node) to more than MAX_NODES values — before constructing it."""
    count = 0
    stack: list[tuple[yaml.Node, int, tuple[int, ...]]] = [(node, 0, ())] if node is not None else []
    while stack:
        current, depth, path = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise SpecError(Problem("", f"the spec expands to more than {MAX_NODES:,} values (through YAML aliases "
                                        "such as *name): refused"), source=source)
        if depth > MAX_DEPTH:
            raise SpecError(Problem("", f"the spec is nested too deeply (at most {MAX_DEPTH} levels)"),
                            source=source)
        if id(current) in path:
            raise SpecError(Problem("", "the spec refers to itself (a YAML alias inside its own anchor): refused"),
                            source=source)
        children = [v for pair in current.value for v in pair] if isinstance(current, yaml.MappingNode) else \
            list(current.value) if isinstance(current, yaml.SequenceNode) else []
        stack += [(child, depth + 1, (*path, id(current))) for child in children]


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
