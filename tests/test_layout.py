"""The layout holds: no import circle between the installed packages' modules, nothing imports the CLI, and each
package and module says its job in its first line. The imports are read with `ast` (every import, at module level
or inside a function), relative imports resolved."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("mae_core", "transfer", "benchmarks", "results")
CLI = "benchmarks.cli"


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            if "recipes" in path.relative_to(REPO).parts:  # recipe files and their schemas, loaded by benchmarks.config
                continue
            parts = path.relative_to(REPO).with_suffix("").parts
            found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """The modules of `modules` that `name` imports (`from pkg import mod` names the submodule when it is one)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import a.b.c` of a name inside a module: the module
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycle(graph) -> list[str] | None:
    """One import circle (a list of modules, the first repeated at the end), or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_the_walk_finds_a_circle_and_resolves_relative_imports():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    modules = _modules()
    assert "benchmarks.running.run_folder" in _imports("benchmarks.running", modules["benchmarks.running"], modules)
    assert "benchmarks.tasks" in _imports("benchmarks.orchestration.suite",
                                          modules["benchmarks.orchestration.suite"], modules)


def test_no_import_circle_between_modules(graph):
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_nothing_imports_the_command_line(graph):
    assert CLI in graph
    assert [m for m, deps in graph.items() if CLI in deps] == []


def test_layers_import_one_way(graph):
    """mae_core imports nothing above it, transfer nothing but mae_core and results (the record and evidence file
    formats), results nothing of mae_core but its torch-free atomic files, errors and pretraining knob list."""
    above = {"mae_core": ("transfer", "benchmarks", "results"), "transfer": ("benchmarks",),
             "results": ("transfer", "benchmarks")}
    for m, deps in graph.items():
        for d in deps:
            assert not d.startswith(above.get(m.split(".")[0], ())), f"{m} imports {d}"
    assert {d for m, deps in graph.items() if m.startswith("results") for d in deps
            if d.startswith("mae_core")} <= {"mae_core.atomic", "mae_core.errors", "mae_core.pretrain_knobs"}


def test_every_package_and_module_says_its_job_first():
    for name, path in {**_modules(), "tools": REPO / "tools" / "__init__.py"}.items():
        doc = ast.get_docstring(ast.parse(path.read_text()))
        assert doc and doc.strip(), f"{name} ({path.relative_to(REPO)}) has no first-line docstring"
