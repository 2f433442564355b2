"""The house stays easy to walk: no import circles, every module importable on its own in any
order, no module over 350 lines."""

import ast
import random
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "contextrast_cli"
MAX_LINES = 350


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports anywhere in its file (module level or inside
    functions). ``from a import b`` counts as importing ``a.b`` when that is a module, else ``a``.
    A parent package that Python runs first is not counted: a package's ``__init__`` importing
    its members, which import a sibling, is the registration pattern, not a circle."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    return {module for module in found if module in known and module != name}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_cycle_finder_finds_circles_and_relative_imports():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None
    known = {"contextrast_cli.engine", "contextrast_cli.engine.runs", "contextrast_cli.config"}
    source = PACKAGE / "engine" / "trainer.py"
    assert {"contextrast_cli.engine.runs", "contextrast_cli.config"} <= imports(
        "contextrast_cli.engine.trainer", source, known)


def test_no_module_imports_a_module_that_imports_it_back():
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    assert sum(map(len, graph.values())) > 50  # the walk does see the imports
    assert find_cycle(graph) is None


def test_every_module_imports_on_its_own_in_any_order():
    """A fresh interpreter imports each module with none of the package loaded before it (torch
    and the other libraries stay loaded: only the package is forgotten), in three orders.
    ``__main__`` runs the command line when imported; ``test_packaging`` runs it."""
    names = sorted(name for name in modules() if not name.endswith("__main__"))
    orders = [names, names[::-1], random.Random(0).sample(names, len(names))]
    script = (
        "import importlib, sys\n"
        f"for order in {orders!r}:\n"
        "    for name in order:\n"
        "        for loaded in [m for m in sys.modules if m == 'contextrast_cli' or m.startswith('contextrast_cli.')]:\n"
        "            del sys.modules[loaded]\n"
        "        importlib.import_module(name)\n"
        "print('ok', len(order))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == f"ok {len(names)}"


def test_no_module_is_over_350_lines():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}
