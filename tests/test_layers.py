"""The layers of docs/DESIGN ("Dependencies point one way"), read from the source with `ast`, nothing imported.

`llvfsr/` never imports the packages that use it (`sweeps`, `analysis`, `baselines`, `bench`); its modules import
each other without circles; `data/` sits below `priors/` (it may read only the vocabulary, `llvfsr.priors.types`);
`config.py` imports nothing of the project when it is loaded. A planted violation in a throw-away package shows that
each check can fail.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
USERS = ("sweeps", "analysis", "baselines", "bench")  # the layers above llvfsr/


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name -> file, for every .py file of `package` under `root` (a package is its __init__)."""
    names = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        names[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return names


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(node: ast.AST, module: str, is_package: bool, top_level: bool) -> list[tuple[str, bool]]:
    """Absolute names imported under `node`, each with whether it surely names a module (``from m import x``: m
    does, m.x may): only those run when the module loads (`top_level`: not inside a function, not under
    ``if TYPE_CHECKING``), or all of them."""
    found: list[tuple[str, bool]] = []
    for child in ast.iter_child_nodes(node):
        if top_level and isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if top_level and isinstance(child, ast.If) and _is_type_checking(child):
            found += [n for c in child.orelse for n in _imports(c, module, is_package, top_level)]
            continue
        if isinstance(child, ast.Import):
            found += [(alias.name, True) for alias in child.names]
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:  # relative: resolved against the importing module's package
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (child.level - 1)]
                base = ".".join(package + ([base] if base else []))
            found.append((base, True))
            found += [(f"{base}.{alias.name}", False) for alias in child.names]  # `from pkg import submodule`
        found += _imports(child, module, is_package, top_level)
    return found


def import_graph(root: Path, package: str, top_level: bool) -> dict[str, set[str]]:
    """Module -> the modules of `package` (and of any other top-level package) that it imports.

    Importing ``a.b.c`` runs the packages ``a.b`` and ``a`` first, so they count as imported too, except the
    packages the importer itself lives in (already loading when it runs).
    """
    modules = module_names(root, package)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1 + is_package)}
        targets = set()
        for imported, certain in _imports(ast.parse(path.read_text(), str(path)), name, is_package, top_level):
            if not certain and imported not in modules:
                continue  # `from m import x` where x is no module of `package`: an attribute of m
            parts = imported.split(".")
            for i in range(1, len(parts) + 1):
                prefix = ".".join(parts[:i])
                if prefix != name and prefix not in own and (prefix in modules or parts[0] != package):
                    targets.add(prefix)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `graph` (strongly connected components of more than one module, or a self-import)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph[node]:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward(graph: dict[str, set[str]], users: tuple[str, ...] = USERS) -> list[str]:
    return [f"{m} -> {t}" for m, targets in sorted(graph.items()) for t in sorted(targets) if t.split(".")[0] in users]


def data_above_priors(graph: dict[str, set[str]]) -> list[str]:
    """Imports from `llvfsr.data` into `llvfsr.priors`, but for its vocabulary `llvfsr.priors.types`."""
    return [f"{m} -> {t}" for m, targets in sorted(graph.items()) if m.startswith("llvfsr.data")
            for t in sorted(targets)
            if t.startswith("llvfsr.priors.") and t != "llvfsr.priors.types"]  # fmt: skip


def test_library_imports_none_of_its_users():
    assert upward(import_graph(REPO, "llvfsr", top_level=False)) == []


def test_library_has_no_import_circles():
    """None when the modules load, and none through imports made inside functions either (the way evaluate <-> train
    and the prior store <-> its extractor once hid theirs)."""
    assert cycles(import_graph(REPO, "llvfsr", top_level=True)) == []
    assert cycles(import_graph(REPO, "llvfsr", top_level=False)) == []


def test_data_sits_below_priors():
    assert data_above_priors(import_graph(REPO, "llvfsr", top_level=False)) == []


def test_config_is_a_leaf_when_loaded():
    graph = import_graph(REPO, "llvfsr", top_level=True)
    assert {t for t in graph["llvfsr.config"] if t.startswith("llvfsr")} == set()


def test_benchmark_reads_no_grids():
    """The benchmark package gets the sweeps' projection handed to it at its CLI; its modules never load sweeps."""
    graph = import_graph(REPO, "bench", top_level=True)
    assert graph and upward(graph, ("sweeps", "analysis")) == []


def test_the_checks_catch_planted_violations(tmp_path):
    package = tmp_path / "llvfsr"
    (package / "data").mkdir(parents=True)
    (package / "priors").mkdir()
    files = {
        "__init__.py": "",
        "config.py": "import llvfsr.models\n",
        "models.py": "",
        "evaluate.py": "from llvfsr.train import make_lr\n",
        "train.py": "from llvfsr import evaluate\n",
        "demo.py": "def main():\n    from sweeps.run import main\n",
        "data/__init__.py": "",
        "data/loading.py": "from llvfsr.priors.store import PriorStore\nfrom llvfsr.priors.types import Priors\n",
        "priors/__init__.py": "from llvfsr.priors.store import PriorStore\n",
        "priors/types.py": "",
        "priors/store.py": "import typing\nif typing.TYPE_CHECKING:\n    from llvfsr.priors import extract\n",
        "priors/extract.py": "from .store import PriorStore\nfrom ..data import loading\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    lazy, loaded = import_graph(tmp_path, "llvfsr", top_level=False), import_graph(tmp_path, "llvfsr", top_level=True)
    assert upward(lazy) == ["llvfsr.demo -> sweeps", "llvfsr.demo -> sweeps.run"]
    assert upward(loaded) == []  # a function-level import: only the full graph sees it
    assert cycles(loaded) == [["llvfsr.evaluate", "llvfsr.train"]]  # not store <-> extract: TYPE_CHECKING only
    assert cycles(lazy) == [
        ["llvfsr.data.loading", "llvfsr.priors", "llvfsr.priors.extract", "llvfsr.priors.store"],
        ["llvfsr.evaluate", "llvfsr.train"],
    ]
    assert data_above_priors(lazy) == ["llvfsr.data.loading -> llvfsr.priors.store"]
    assert loaded["llvfsr.config"] == {"llvfsr.models"}
    assert "llvfsr.data.loading" in loaded["llvfsr.priors.extract"]  # relative imports resolved
    # an import circle through a package's __init__ (priors.store -> priors -> store) is one, only from outside
    (package / "priors/store.py").write_text("from llvfsr.data.loading import x\n")
    assert cycles(import_graph(tmp_path, "llvfsr", top_level=True)) == [
        ["llvfsr.data.loading", "llvfsr.priors", "llvfsr.priors.store"],
        ["llvfsr.evaluate", "llvfsr.train"],
    ]
