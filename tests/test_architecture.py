"""The package's structure: imports point down only, and the command line starts light."""
from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from support import ROOT

PACKAGE = ROOT / "luigi_tasks"

# The lowest layer: errors, settings, months, files, schema and parameter types. They import nothing of
# the package above them, so every other module may use them.
FOUNDATION = {"errors", "secret", "months", "schema", "params", "config", "files"}


def _is_main_guard(node: ast.stmt) -> bool:
    """``if __name__ == "__main__":`` -- code that runs only when the module is a script, as
    ``__main__`` and not as itself, so it cannot close a cycle (the documented module forms)."""
    return (isinstance(node, ast.If) and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name) and node.test.left.id == "__name__")


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports, at any depth (inside functions too)."""
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__") for p in paths}
    graph: dict[str, set[str]] = {}
    for path in paths:
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        tree = ast.parse(path.read_text())
        tree.body = [node for node in tree.body if not _is_main_guard(node)]
        edges = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("luigi_tasks"):
                # `from luigi_tasks import schema` imports the submodule, not the package's __init__
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    edges.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name.startswith("luigi_tasks"))
        graph[module] = edges
    return {m: {e for e in edges if e in modules and e != m} for m, edges in graph.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "luigi_tasks.parquet_csv" in graph["luigi_tasks.convert"]     # imported inside run()
    assert "luigi_tasks.cli" not in graph["luigi_tasks.blocks"]           # only under the __main__ guard
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_in_the_package():
    assert find_cycle(import_graph()) is None


def test_the_foundation_imports_nothing_above_it():
    graph = import_graph()
    for name in FOUNDATION:
        above = {m for m in graph[f"luigi_tasks.{name}"] if m.split(".")[-1] not in FOUNDATION}
        assert not above, f"luigi_tasks.{name} imports {above}"


def test_only_the_command_line_imports_the_commands():
    graph = import_graph()
    for module, edges in graph.items():
        if not module.startswith(("luigi_tasks.cli", "luigi_tasks.commands", "luigi_tasks.__main__")):
            assert not {e for e in edges if e.startswith(("luigi_tasks.cli", "luigi_tasks.commands"))}, module


@pytest.mark.slow
def test_blocks_list_does_not_import_pyarrow():
    code = ("import sys; from luigi_tasks.cli import main; rc = main(['blocks', 'list']); "
            "print('pyarrow' in sys.modules, 'numpy' in sys.modules, rc)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip().splitlines()[-1] == "False False 0", proc.stderr[-2000:]
    assert "local-postgres\tembedded-postgres" in proc.stdout


@pytest.mark.slow
def test_help_lists_every_command():
    from luigi_tasks.cli import COMMANDS

    proc = subprocess.run([sys.executable, "-m", "luigi_tasks", "--help"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0
    for name in COMMANDS:
        assert f"\n    {name}" in proc.stdout
