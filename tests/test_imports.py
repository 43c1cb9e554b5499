"""No import circles: the package's import graph, built from the source with ``ast``, has no cycle.

What counts as an arrow ``A -> B`` (A and B modules of the package; a package and its ``__init__.py`` are one
node):

* every ``import B`` / ``import B.c as d`` / ``from B import name`` / relative ``from .B import name`` statement
  in A, wherever it stands: at module level, inside a function or class, under ``if TYPE_CHECKING:`` or in a
  ``try``.  A function-level import is still a dependency for whoever reads or tests A alone.
* ``from P import x`` is an arrow to the submodule ``P.x`` when ``P/x.py`` (or ``P/x/``) exists, else to ``P``
  itself (``from mixviz import mixing`` -> ``mixviz.mixing``; ``from mixviz.semi import check_config`` ->
  ``mixviz.semi``, the facade that re-exports it, not the submodule that defines it).
* Importing ``P.x`` is an arrow to ``P.x`` only, *not* to the parent packages whose ``__init__`` Python runs
  first.  That is what keeps plain re-exports out of circles: ``mixviz.mixing`` (``__init__``) -> its
  submodule ``mixviz.mixing.static`` -> ``mixviz.mixing.batch`` is a chain, not a circle, although Python runs
  ``mixviz/mixing/__init__.py`` before ``static``.  An arrow from a package's ``__init__`` to its own
  submodules counts like any other, so a submodule that imports its own package's facade (``from mixviz.semi
  import X`` inside ``mixviz/semi/training.py``) closes a circle through it: it depends on every sibling the
  facade loads.
* String-based imports are not arrows: ``importlib.import_module(f"mixviz.{name}")`` in the lazy
  ``mixviz/__init__.py`` (PEP 562 ``__getattr__``) loads a module on attribute access; it names no module in the
  source and adds no arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import mixviz

PACKAGE = Path(mixviz.__file__).parent


def _modules(root: Path, name: str) -> dict[str, Path]:
    """``{dotted module name: file}`` of the package ``name`` rooted at ``root`` (a package is its ``__init__``)."""
    out = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join([name, *parts])] = path
    return out


def _targets(node: ast.Import | ast.ImportFrom, here: str, is_package: bool, modules: dict[str, Path]) -> set[str]:
    """The package modules one import statement in module ``here`` points at."""
    def known(dotted: str) -> str | None:  # the longest prefix of ``dotted`` that is a module of the package
        parts = dotted.split(".")
        for n in range(len(parts), 0, -1):
            if ".".join(parts[:n]) in modules:
                return ".".join(parts[:n])
        return None

    if isinstance(node, ast.Import):
        return {m for alias in node.names if (m := known(alias.name)) is not None}
    base = node.module or ""
    if node.level:  # relative: from the package of ``here`` (``here`` itself when it is a package), up level - 1
        package = here.split(".") if is_package else here.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join([*package, *([base] if base else [])])
    if known(base) is None:
        return set()
    out = set()
    for alias in node.names:
        sub = f"{base}.{alias.name}"
        out.add(sub if sub in modules else known(base))
    return out


def import_graph(root: Path, name: str) -> dict[str, set[str]]:
    """``{module: modules it imports}`` of the package ``name`` in directory ``root`` (see the module docstring
    for what counts as an arrow).  Self-arrows are dropped."""
    modules = _modules(root, name)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for here, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                graph[here] |= _targets(node, here, is_package, modules) - {here}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One circle per strongly connected component of more than one module (Tarjan), each as the path
    ``[a, b, ..., a]`` found by a breadth-first search from the component's first module back to itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(v: str) -> None:  # recursive Tarjan: the package is a few hundred modules deep at most
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
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
                components.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)

    circles = []
    for component in components:
        inside, start = set(component), component[0]
        parent: dict[str, str] = {}
        frontier = [start]
        while start not in parent:  # breadth-first: the shortest way from start back to start
            reached = []
            for v in frontier:
                for w in sorted(graph[v] & inside):
                    if w not in parent:
                        parent[w] = v
                        reached.append(w)
            frontier = reached
        path, v = [start], parent[start]
        while v != start:
            path.append(v)
            v = parent[v]
        circles.append([start, *reversed(path[1:]), start])
    return circles


def _describe(circles: list[list[str]]) -> str:
    return "import circles:\n" + "\n".join(" -> ".join(c) for c in circles)


def test_the_package_has_no_import_circles():
    circles = import_circles(import_graph(PACKAGE, "mixviz"))
    assert not circles, _describe(circles)


def test_the_graph_sees_the_imports_it_should():
    """Arrows that must be there (so an empty graph cannot pass): module level, function level, relative, a
    submodule named in ``from P import x`` and a package's re-exports."""
    graph = import_graph(PACKAGE, "mixviz")
    assert "mixviz.config" in graph["mixviz.train"]                     # module level
    assert "mixviz.mixing" in graph["mixviz.steps"]                     # function level: from mixviz import mixing
    assert "mixviz.mixing.static" in graph["mixviz.mixing"]             # a package re-exporting its submodule
    assert "mixviz.mixing.static" in graph["mixviz.mixing.registry"]    # from mixviz.mixing import static
    assert "mixviz.mixing" not in graph["mixviz.mixing.registry"]       # ... which is no arrow to the facade


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_a_hand_made_circle_is_found_and_named(tmp_path):
    pkg = _write(tmp_path / "toy", {
        "__init__.py": "",
        "a.py": "from toy.b import g\n\ndef f():\n    return g()\n",
        "b.py": "def g():\n    from toy import a  # a function-level import is still an arrow\n    return a\n",
        "c.py": "import toy.a\n",
    })
    circles = import_circles(import_graph(pkg, "toy"))
    assert circles == [["toy.a", "toy.b", "toy.a"]]
    assert "toy.a -> toy.b -> toy.a" in _describe(circles)


def test_circles_through_a_facade_and_relative_imports_are_found(tmp_path):
    """A submodule that imports its own package's facade closes a circle through the ``__init__`` re-exporting
    it; relative imports resolve like absolute ones."""
    pkg = _write(tmp_path / "toy", {
        "__init__.py": "",
        "sub/__init__.py": "from .core import X\nfrom .loop import run\n",
        "sub/core.py": "X = 1\n",
        "sub/loop.py": "def run():\n    from ..cfg import Config\n    return Config\n",
        "cfg.py": "class Config:\n    def check(self):\n        from toy.sub import X\n        return X\n",
    })
    assert import_circles(import_graph(pkg, "toy")) == [["toy.cfg", "toy.sub", "toy.sub.loop", "toy.cfg"]]


def test_plain_re_exports_are_no_circle(tmp_path):
    """``pkg/__init__`` re-exporting its submodules, which import each other (and name the package in
    ``from pkg import sibling``), is a chain, not a circle."""
    pkg = _write(tmp_path / "toy", {
        "__init__.py": "from toy.mix import static\nfrom toy.mix.static import cut\n",
        "mix/__init__.py": "from toy.mix.static import cut\nfrom toy.mix.batch import Batch\n",
        "mix/batch.py": "class Batch:\n    pass\n",
        "mix/static.py": "from toy.mix import batch\nfrom toy.mix.batch import Batch\n\ndef cut():\n    return Batch()\n",
    })
    graph = import_graph(pkg, "toy")
    assert graph["toy.mix.static"] == {"toy.mix.batch"}
    assert import_circles(graph) == []
