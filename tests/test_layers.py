"""The four layers and which way they depend: core <- platform <- defs <- cli (README: Architecture).

Read from the source with ``ast``, so imports inside functions count as much as those at the top: a cycle or
an upward import hidden in a function body still fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "seg_pipeline"
LAYERS = ("core", "platform", "defs", "cli")  # each may import the ones before it, never those after
# third-party packages a layer must not import: core stays free of orchestration and tracking
FORBIDDEN_IN = {"core": ("dagster", "dagster_duckdb", "dagster_duckdb_pandas", "dagster_postgres", "mlflow")}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in ("platform", "defs", "cli"):
        return parts[1]
    if module == "seg_pipeline.definitions":
        return "defs"
    return "core"


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Ids of the import nodes under ``if TYPE_CHECKING:``: names for annotations, never imported at run time."""
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and getattr(node.test, "id", getattr(node.test, "attr", None)) == "TYPE_CHECKING"
        for inner in ast.walk(node)
    }


def imports(module: str) -> list[tuple[str, int]]:
    """Every module ``module`` imports at run time (absolute names, submodules resolved), with the line."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    annotations_only = _type_checking_only(tree)
    found = []
    for node in ast.walk(tree):
        if id(node) in annotations_only:
            continue
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved against the importing package
                package = module.split(".")
                if MODULES[module].name != "__init__.py":
                    package = package[:-1]
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names
                      if f"{base}.{alias.name}" in MODULES]  # fmt: skip
    return found


def internal_imports(module: str) -> set[str]:
    return {name for name, _ in imports(module) if name in MODULES and name != module}


def test_the_layers_are_where_the_readme_says():
    assert {layer(m) for m in MODULES} == set(LAYERS)
    assert layer("seg_pipeline.platform.warehouse") == "platform"
    assert layer("seg_pipeline.defs.raw") == "defs"
    assert layer("seg_pipeline.cli.launch") == "cli"
    assert layer("seg_pipeline.cleaning.identity") == "core"


def test_every_import_points_down_the_layers():
    upward = []
    for module in MODULES:
        rank = LAYERS.index(layer(module))
        for name, line in imports(module):
            if name in MODULES and LAYERS.index(layer(name)) > rank:
                upward.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} ({layer(module)}) imports "
                              f"{name} ({layer(name)})")  # fmt: skip
    assert upward == []


def test_the_core_imports_neither_dagster_nor_mlflow():
    found = []
    for module in MODULES:
        for name, line in imports(module):
            top = name.split(".")[0]
            if top in FORBIDDEN_IN.get(layer(module), ()):
                found.append(f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {name}")
    assert found == []


def test_no_module_imports_dagsters_private_modules():
    private = [
        f"{MODULES[module].relative_to(PACKAGE.parent)}:{line} imports {name}"
        for module in MODULES
        for name, line in imports(module)
        if name.startswith(("dagster._", "dagster_duckdb._", "dagster_postgres._"))
    ]
    assert private == []
    # and none reached through an attribute of the package either (dg._core...)
    through_attributes = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path in MODULES.values()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        and node.value.id in ("dagster", "dg") and node.attr.startswith("_")
    ]  # fmt: skip
    assert through_attributes == []


def cycles() -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan), in a stable order."""
    graph = {m: sorted(internal_imports(m)) for m in MODULES}
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(groups)


def test_no_import_cycles_even_through_imports_inside_functions():
    assert cycles() == []


@pytest.mark.parametrize("package", ["platform", "defs", "cli"])
def test_each_layer_states_its_role(package):
    doc = ast.get_docstring(ast.parse((PACKAGE / package / "__init__.py").read_text(encoding="utf-8")))
    assert doc and doc.lower().startswith(f"{package} layer")
