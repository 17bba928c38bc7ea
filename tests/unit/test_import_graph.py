"""The layers of kijun import one way (issue 16, docs/architecture.md): no import cycle in kijun/,
counting imports inside functions too, and the CLI reaches the engine only through kijun.runs."""

from __future__ import annotations

import ast
from pathlib import Path

KIJUN = Path(__file__).resolve().parents[2] / "kijun"
# The engine (plan, probe, judge, change hosts): the CLI calls a run, never these.
ENGINE = {"kijun.plan", "kijun.check", "kijun.fleet", "kijun.remote", "kijun.facts", "kijun.deploy", "kijun.ops",
          "kijun.apply", "kijun.controls", "kijun.store_ledger"}
CLI = {"kijun.cli", "kijun.cli_reports", "kijun.cli_clauses"}


def modules(root: Path = KIJUN) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(root: Path = KIJUN) -> dict[str, set[str]]:
    """Module -> kijun modules it imports anywhere in its file (module level, functions, try blocks).
    `from kijun.x import y` counts as importing kijun.x.y when that is a module, else kijun.x."""
    mods = modules(root)
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from . import x / from ..y import z
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names]
            else:
                continue
            for target in targets:
                while target and target not in mods:  # kijun.x.function -> kijun.x
                    target = target.rpartition(".")[0]
                if target and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def describe(graph: dict[str, set[str]], component: list[str]) -> str:
    members = set(component)
    return "; ".join(f"{m} -> {', '.join(sorted(graph[m] & members))}" for m in component)


def test_no_import_cycle_in_kijun():
    graph = import_graph()
    assert len(graph) > 40 and "kijun.runs.keeper" in graph["kijun.runs.checking"]  # the graph was really read
    found = cycles(graph)
    assert found == [], "import cycles: " + " | ".join(describe(graph, c) for c in found)


def test_the_cycle_finder_finds_function_level_and_relative_cycles(tmp_path):
    pkg = tmp_path / "kijun"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("import json\nfrom kijun import b\n")
    (pkg / "b.py").write_text("def late():\n    from kijun.a import thing\n")  # only inside a function
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "c.py").write_text("from . import d\n")
    (pkg / "sub" / "d.py").write_text("try:\n    from .c import x\nexcept ImportError:\n    pass\n")
    (pkg / "e.py").write_text("from kijun.a import thing\n")  # imports into a cycle, is not in one
    graph = import_graph(pkg)
    assert cycles(graph) == [["kijun.a", "kijun.b"], ["kijun.sub.c", "kijun.sub.d"]]


def test_the_cli_reaches_the_engine_only_through_runs():
    graph = import_graph()
    direct = {m: sorted(graph[m] & ENGINE) for m in CLI}
    assert all(not engine for engine in direct.values()), direct
    assert "kijun.runs" in graph["kijun.cli"] and "kijun.runs" in graph["kijun.cli_reports"]
