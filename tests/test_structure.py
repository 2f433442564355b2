"""The house stays easy to walk: rooms import only the rooms below them, no import circles, every
module importable on its own in any order, no module over 350 lines, no function over 50."""

import ast
import random
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "contextrast_cli"
MAX_LINES = 350
MAX_FUNCTION_LINES = 50

# The rooms, bottom up (README "Architecture"): a module may import its own room and the rooms of
# lower layers, never a room of its own layer or above. The package's own __init__ holds only the
# version and is at the bottom.
LAYERS = (
    {"contextrast_cli", "errors", "atomic"},
    {"config"},
    {"contrast", "models", "data", "runtime"},
    {"evaluation"},
    {"viz", "export"},
    {"train"},
    {"experiments"},
    {"cli", "api"},
    {"__main__"},
)
RANK = {room: rank for rank, rooms in enumerate(LAYERS) for room in rooms}
FORBIDDEN_NAMES = {"engine", "utils", "common", "misc", "helpers"}


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
    known = {"contextrast_cli.train", "contextrast_cli.train.runs", "contextrast_cli.config"}
    source = PACKAGE / "train" / "trainer.py"
    assert {"contextrast_cli.train.runs", "contextrast_cli.config"} <= imports(
        "contextrast_cli.train.trainer", source, known)


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


def room(module: str) -> str:
    """``contextrast_cli.train.trainer`` -> ``train``; the package itself -> ``contextrast_cli``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """``a -> b`` for every import of a room not strictly below the importer's (its own room is fine)."""
    return sorted(f"{source} -> {target}" for source, targets in graph.items() for target in targets
                  if room(target) != room(source) and RANK[room(target)] >= RANK[room(source)])


def test_the_layer_check_finds_an_upward_and_a_sideways_import():
    graph = {"contextrast_cli.data.loading": {"contextrast_cli.train.runs", "contextrast_cli.config.schema"},
             "contextrast_cli.viz.charts": {"contextrast_cli.export.graph"},
             "contextrast_cli.train.trainer": {"contextrast_cli.train.runs", "contextrast_cli.evaluation.evaluator"}}
    assert upward_imports(graph) == ["contextrast_cli.data.loading -> contextrast_cli.train.runs",
                                     "contextrast_cli.viz.charts -> contextrast_cli.export.graph"]


def test_every_room_has_a_layer_and_imports_only_rooms_below():
    found = modules()
    graph = {name: imports(name, path, set(found)) for name, path in found.items()}
    unplaced = sorted({room(name) for name in found} - set(RANK))
    assert unplaced == [], f"place these rooms in LAYERS (and README Architecture): {unplaced}"
    assert upward_imports(graph) == []


def test_every_room_says_what_it_owns_and_what_it_may_import():
    rooms = [path for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()]
    assert len(rooms) >= 10
    for path in rooms:
        doc = ast.get_docstring(ast.parse((path / "__init__.py").read_text(encoding="utf-8"))) or ""
        assert path.name == "cli" or "May import:" in doc, f"{path.name}/__init__.py: say what the room may import"
    assert not FORBIDDEN_NAMES & {p.stem for p in PACKAGE.rglob("*") if "__pycache__" not in p.parts}


def long_functions(source: str, limit: int = MAX_FUNCTION_LINES) -> dict[str, int]:
    """Functions (and methods) of ``source`` longer than ``limit`` lines, signature and body
    included, their docstring not counted."""
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = node.end_lineno - node.lineno + 1
            if ast.get_docstring(node, clean=False) is not None:
                length -= node.body[0].end_lineno - node.body[0].lineno + 1
            if length > limit:
                found[node.name] = length
    return found


def test_the_length_check_counts_code_not_docstrings():
    body = "\n".join(f"    x{i} = {i}" for i in range(50))
    doc = '    """' + "\n".join(["line"] * 30) + '"""'
    assert long_functions(f"def f():\n{doc}\n{body}\n") == {"f": 51}
    assert long_functions(f"def f():\n{doc}\n{body[: body.rindex(chr(10))]}\n") == {}


def test_no_function_is_over_50_lines():
    found = {f"{name}.{function}": n for name, path in modules().items()
             for function, n in long_functions(path.read_text(encoding="utf-8")).items()}
    assert found == {}
