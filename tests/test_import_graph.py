"""The import graph of the library (``rlopt``) and the agents has no cycle: every ``import`` and
``from ... import`` of every module counts, late imports inside functions and ``TYPE_CHECKING``
blocks included (issue 19: the optim ↔ kfac_optimizer and agents.base ↔ agents cycles are gone,
and none may come back).

An edge goes from a module to the module it names: ``from rlopt.trust_region.cg import x`` points
at ``rlopt.trust_region.cg``, ``from rlopt import optimizers`` at ``rlopt.optimizers`` and ``from
rlopt.trust_region import x`` at the package's ``__init__``. A package's ``__init__`` importing its
own submodules is the usual layering and not a cycle by itself; a submodule that imports its
package back (or any module that imports one that imports it) is.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rlopt", "agents")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def internal_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The internal modules ``path`` (module ``name``) imports anywhere in its text."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in known else base)
    return {module for module in found if module in known and module != name}


def import_graph() -> dict[str, set[str]]:
    modules = internal_modules()
    return {name: imports_of(name, path, set(modules)) for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_library_and_the_agents_import_without_a_cycle() -> None:
    assert find_cycle(import_graph()) is None


def test_the_walk_sees_late_and_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg import b\n    return b\n")
    (package / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n")
    known = {"pkg", "pkg.a", "pkg.b"}
    graph = {"pkg.a": imports_of("pkg.a", package / "a.py", known), "pkg.b": imports_of("pkg.b", package / "b.py", known)}
    assert graph == {"pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
    assert find_cycle(graph) == ["pkg.a", "pkg.b", "pkg.a"]  # the check can fail


def test_the_old_optim_kfac_cycle_would_be_found() -> None:
    graph = import_graph()
    assert "rlopt.optim" in graph and "rlopt.kfac_optimizer" in graph  # both still importable names
    assert find_cycle({**graph, "rlopt.optimizers": graph["rlopt.optimizers"] | {"rlopt.optim"}}) is not None
