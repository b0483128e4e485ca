"""Import hygiene of the ``fnet`` package, read from the source with ``ast`` (nothing imported).

Three rules (issue 14):

- no ``import fnet...`` / ``from fnet... import`` inside a function or method body: a lazy
  import hides a dependency (and, often, a cycle) from the reader and from this test;
- the module-level import graph among fnet modules has no cycle;
- ``fnet.distributed`` is a leaf: it imports no fnet module but the leaf utilities.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fnet"
# What a leaf module may import from fnet: modules that themselves import no fnet module.
LEAF_UTILITIES = frozenset({"fnet.errors", "fnet._checks"})


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    return {
        _module_name(p): (p, ast.parse(p.read_text(encoding="utf-8"), filename=str(p)))
        for p in sorted(PACKAGE.rglob("*.py"))
    }


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name][0].name == "__init__.py"


def _imported(node: ast.Import | ast.ImportFrom, module: str) -> list[str]:
    """The fnet modules an import statement in ``module`` names (absolute or relative)."""
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        if node.level:  # relative: resolve against the importing module's package
            package = module if _is_package(module) else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{node.module}" if node.module else package
        else:
            base = node.module or ""
        # ``from fnet.train import fit`` names the submodule fnet.train.fit when it exists.
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
    out = []
    for name in names:
        while name and name not in MODULES:  # ``import fnet.x.y`` of a symbol: its module
            name = name.rpartition(".")[0]
        if name.startswith("fnet"):
            out.append(name)
    return out


def _imports_in_functions(module: str) -> list[str]:
    found = []
    for fn in ast.walk(MODULES[module][1]):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)) and _imported(node, module):
                    found.append(f"{MODULES[module][0].relative_to(ROOT)}:{node.lineno}")
    return found


def _module_level_graph() -> dict[str, set[str]]:
    """module -> the fnet modules it imports at import time (``if TYPE_CHECKING:`` excluded).

    A package ``fnet.a`` also depends on its parent ``fnet`` being imported first, but that
    edge is Python's, not the code's: only written imports count.
    """
    graph: dict[str, set[str]] = {}
    for module, (_, tree) in MODULES.items():
        deps: set[str] = set()
        stack: list[ast.AST] = list(tree.body)
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps.update(_imported(node, module))
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                stack.extend(node.orelse)
            elif isinstance(node, (ast.If, ast.Try, ast.With)):
                stack.extend(ast.iter_child_nodes(node))
            elif isinstance(node, ast.ExceptHandler):
                stack.extend(node.body)
        deps.discard(module)
        graph[module] = deps
    return graph


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or ``None`` (iterative DFS)."""
    color: dict[str, int] = dict.fromkeys(graph, 0)  # 0 new, 1 on the stack, 2 done
    for start in sorted(graph):
        if color[start]:
            continue
        path = [start]
        iters = [iter(sorted(graph[start]))]
        color[start] = 1
        while iters:
            nxt = next(iters[-1], None)
            if nxt is None:
                color[path.pop()] = 2
                iters.pop()
            elif color.get(nxt, 2) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif color.get(nxt, 2) == 0:
                color[nxt] = 1
                path.append(nxt)
                iters.append(iter(sorted(graph[nxt])))
    return None


def test_the_ast_reader_sees_the_package():
    # Guards the three tests below against passing on an empty or misread tree.
    graph = _module_level_graph()
    assert {"fnet", "fnet.distributed", "fnet.train.fit", "fnet.per_example"} <= set(graph)
    assert "fnet.train.fit" in graph["fnet"] and "fnet.core" in graph["fnet.layers.dense"]
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_fnet_import_inside_a_function():
    found = [site for module in MODULES for site in _imports_in_functions(module)]
    assert not found, (
        "fnet modules imported inside a function (move them to the module's top-level "
        f"imports; a lazy import hides a dependency or a cycle): {found}"
    )


def test_the_module_level_import_graph_has_no_cycle():
    cycle = _find_cycle(_module_level_graph())
    assert cycle is None, "import cycle among fnet modules: " + " -> ".join(cycle or [])


@pytest.mark.parametrize("module", ["fnet.distributed", *sorted(LEAF_UTILITIES)])
def test_leaf_modules_import_only_leaf_utilities(module):
    deps = _module_level_graph()[module] | {
        name
        for node in ast.walk(MODULES[module][1])
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for name in _imported(node, module)
    }
    allowed = LEAF_UTILITIES - {module} if module == "fnet.distributed" else frozenset()
    assert deps <= allowed, f"{module} must be a leaf; it imports {sorted(deps - allowed)}"


def _functions_taking_a_mesh():
    """``(qualified name, signature)`` of every fnet function and method with a ``mesh``."""
    for module in sorted(MODULES):
        mod = importlib.import_module(module)
        for name, obj in vars(mod).items():
            if getattr(obj, "__module__", None) != module:
                continue
            found = [(name, obj)] if inspect.isfunction(obj) else []
            if inspect.isclass(obj):
                found = [(f"{name}.{k}", v) for k, v in vars(obj).items() if inspect.isfunction(v)]
            for qual, fn in found:
                sig = inspect.signature(fn)
                if "mesh" in sig.parameters:
                    yield f"{module}.{qual}", sig


def _is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


# Placement helpers take the data first and the mesh last, positionally: replicate(tree, mesh).
MESH_LAST_MODULES = ("fnet.distributed.", "fnet.train.step.sharded_objective")


def test_mesh_is_last_in_placement_helpers_and_keyword_only_elsewhere():
    seen, wrong = [], []
    for name, sig in _functions_taking_a_mesh():
        seen.append(name)
        params = [p for p in sig.parameters.values() if p.name != "self"]
        mesh = sig.parameters["mesh"]
        positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
        if name.startswith(MESH_LAST_MODULES) or name.endswith("ShardedObjective.__init__"):
            ok = positional and positional[-1] is mesh
            rule = "the last positional parameter"
        elif any(_is_private(part) for part in name.split(".")):
            continue  # private (e.g. the engine's cache key, a NamedTuple)
        else:
            ok = mesh.kind is mesh.KEYWORD_ONLY
            rule = "keyword-only (mesh=...)"
        if not ok:
            wrong.append(f"{name}{sig}: mesh must be {rule}")
    assert "fnet.train.fit.fit" in seen and "fnet.distributed.replicate" in seen
    assert not wrong, "\n".join(wrong)
