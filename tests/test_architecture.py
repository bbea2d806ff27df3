"""The package's shape (docs/architecture.md): layers that import only downward, checked two ways.

- import-linter's contracts in pyproject.toml (`lint-imports`, also run by .ci/run before the tests);
- an `ast` walk over stangen/ that also sees the imports inside functions, which import-linter counts but a
  module-level graph hides: no module may sit in an import cycle even through a deferred import, function-
  level imports of the package stay few and say why, and no private name is imported across modules.

    python tests/test_architecture.py      # the walk's findings, printed
"""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "stangen"
MAX_FUNCTION_LEVEL_IMPORTS = 10  # outside cli.py, which loads each command's modules on demand


@dataclass
class ImportWalk:
    edges: dict[str, set[str]] = field(default_factory=dict)
    function_level: list[tuple[str, int, str, str]] = field(default_factory=list)  # (module, line, target, reason)
    private: list[tuple[str, int, str]] = field(default_factory=list)  # (module, line, "target.name")

    def cycles(self) -> list[list[str]]:
        """Strongly connected components with more than one module (Tarjan)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on_stack: set[str] = set()
        found: list[list[str]] = []

        def visit(v: str) -> None:
            index[v] = low[v] = len(index)
            stack.append(v)
            on_stack.add(v)
            for w in self.edges.get(v, ()):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on_stack:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                component = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    component.append(w)
                    if w == v:
                        break
                if len(component) > 1:
                    found.append(sorted(component))

        for v in sorted(self.edges):
            if v not in index:
                visit(v)
        return found


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def walk(package: Path = PACKAGE) -> ImportWalk:
    modules = {module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    result = ImportWalk(edges={m: set() for m in modules})
    for current, path in modules.items():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        is_package = path.name == "__init__.py"

        def targets(node: ast.ImportFrom | ast.Import):
            if isinstance(node, ast.Import):
                return [(a.name, None) for a in node.names]
            if node.level:
                base = current.split(".") if is_package else current.split(".")[:-1]
                base = base[:len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            return [(f"{module}.{a.name}", None) if f"{module}.{a.name}" in modules else (module, a.name)
                    for a in node.names]

        def visit(node: ast.AST, depth: int) -> None:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                for child in node.orelse:
                    visit(child, depth)
                return  # annotations only: not an import at run time
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for module, name in targets(node):
                    if module != "stangen" and not module.startswith("stangen."):
                        continue
                    target = module
                    while target not in modules and "." in target:
                        target = target.rsplit(".", 1)[0]
                    if target == current:
                        continue
                    result.edges[current].add(target)
                    if depth and not current.endswith(".cli"):
                        # the reason: a comment on the import's line or on the line before it
                        here, before = lines[node.lineno - 1], lines[node.lineno - 2] if node.lineno > 1 else ""
                        reason = here.partition("#")[2] or (before.strip()[1:] if before.strip().startswith("#") else "")
                        result.function_level.append((current, node.lineno, target, reason.strip()))
                    if name and name.startswith("_") and not name.startswith("__"):
                        result.private.append((current, node.lineno, f"{target}.{name}"))
            depth_inside = depth + isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            for child in ast.iter_child_nodes(node):
                visit(child, depth_inside)

        visit(ast.parse(source), 0)
    return result


WALK = walk()


def test_no_module_is_in_an_import_cycle_even_through_function_level_imports():
    assert WALK.cycles() == []


def test_function_level_imports_of_the_package_are_few_and_say_why():
    assert len(WALK.function_level) <= MAX_FUNCTION_LEVEL_IMPORTS, WALK.function_level
    unexplained = [f"{m}:{line} → {t}" for m, line, t, reason in WALK.function_level if not reason]
    assert not unexplained, "a function-level import needs a comment saying why (start-up time, an optional " \
                            "dependency); one that dodges a cycle is a misplaced function:\n" + "\n".join(unexplained)


def test_no_private_name_is_imported_across_modules():
    assert WALK.private == []


def test_the_walk_sees_cycles_deferred_imports_and_private_names(tmp_path):
    """The checks above can fail: a small package with each defect is caught."""
    package = tmp_path / "stangen"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("from .b import _helper\n")
    (package / "b.py").write_text("def _helper():\n    from .a import x\n    return x\n")
    found = walk(package)
    assert found.cycles() == [["stangen.a", "stangen.b"]]
    assert found.function_level == [("stangen.b", 2, "stangen.a", "")]
    assert found.private == [("stangen.a", 1, "stangen.b._helper")]


def test_import_linter_contracts_hold():
    """pyproject.toml's contracts (layers, and the forbidden imports) — also run by .ci/run."""
    command = shutil.which("lint-imports")
    if command is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[test]'")
    done = subprocess.run([command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]


if __name__ == "__main__":
    print("cycles:", WALK.cycles() or "none")
    print(f"function-level imports of the package outside cli.py: {len(WALK.function_level)}")
    for module, line, target, reason in WALK.function_level:
        print(f"  {module}:{line} → {target}  # {reason or '(no reason given)'}")
    print("private names imported across modules:", WALK.private or "none")
    sys.exit(0)
