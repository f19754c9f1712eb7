"""No import cycles in cloudft/ or train_entry/, counting imports inside functions too (a cycle hidden in a
function is still a cycle: the two modules cannot be understood, tested or changed apart), and train_entry never
imports cloudft."""

from __future__ import annotations

import ast
from pathlib import Path

from helpers import REPO

PACKAGES = ("cloudft", "train_entry")


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (REPO / pkg).rglob("*.py"):
            parts = path.relative_to(REPO).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            out[name] = path
    return out


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of ours that `name` imports anywhere in its body (module level, functions, TYPE_CHECKING excluded)."""
    tree = ast.parse(path.read_text())
    is_pkg = path.name == "__init__.py"
    base = name if is_pkg else name.rsplit(".", 1)[0]
    typing_only: set[int] = set()
    for node in ast.walk(tree):  # `if TYPE_CHECKING:` blocks are annotations, not imports at run time
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING":
            typing_only.update(id(n) for n in ast.walk(node))
    found = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                mod = ".".join(anchor + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, path, set(mods)) for name, path in mods.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def _is_package_edge(a: str, b: str) -> bool:
    """A package's __init__ re-exporting its own submodule is not a dependency cycle."""
    return b.startswith(a + ".") or a.startswith(b + ".")


def test_no_import_cycles():
    graph = _graph()
    trimmed = {a: {b for b in bs if not _is_package_edge(a, b)} for a, bs in graph.items()}
    assert _cycles(trimmed) == []


def test_the_checker_sees_a_cycle_hidden_in_a_function(tmp_path):
    """Two modules that import each other, one of them only inside a function, and one import under
    TYPE_CHECKING that must not count."""
    (tmp_path / "plan.py").write_text("from .planner import estimate\n")
    (tmp_path / "planner.py").write_text("def estimate():\n    from .plan import Plan\n")
    (tmp_path / "spec.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .plan import Plan\n")
    known = {"pkg.plan", "pkg.planner", "pkg.spec"}
    graph = {f"pkg.{n}": _imports(f"pkg.{n}", tmp_path / f"{n}.py", known) for n in ("plan", "planner", "spec")}
    assert graph == {"pkg.plan": {"pkg.planner"}, "pkg.planner": {"pkg.plan"}, "pkg.spec": set()}
    assert _cycles(graph) == [["pkg.plan", "pkg.planner"]]


def test_train_entry_never_imports_cloudft():
    graph = _graph()
    bad = {a: sorted(b for b in bs if b.startswith("cloudft")) for a, bs in graph.items() if a.startswith("train_entry")}
    assert {a: b for a, b in bad.items() if b} == {}
