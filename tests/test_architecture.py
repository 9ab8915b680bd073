"""The layout is the architecture: imports are read from the source (every import statement,
function-level ones included) and checked against the layering the project promises.

- no import cycle between any two modules of the project;
- no private name (`_x`) of one library module imported or read by another;
- `pertok` needs no jax and imports no other package of the project; `layers` knows no music;
  `training` imports no model; a model package imports only `layers` and `pertok`;
- inside `pertok`, the core imports downward only (in the order a note travels), never one of
  its sub-packages; `align` sits on the core, `store` on `align`, the CLI on top; the corpus
  generator (`pertok.synthetic`) imports nothing of `pertok` outside itself.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("pertok", "layers", "training", "baseline", "composer", "performer", "perceivers", "evaluation",
            "experiments", "benchmarks", "cadenza")
MODELS = ("baseline", "composer", "performer", "perceivers")
# The tokenizer's core, lowest first: each module may import only those before it.
PERTOK_CORE = ("errors", "config", "vocab", "segments", "timing", "events", "quantize", "encode", "decode_tokens",
               "decode_fast", "decode", "render", "batch", "grammar", "tokenizer", "__init__")
PERTOK_ABOVE_CORE = ("align", "store", "cli", "__main__")  # each may import the core and those before it


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(path): path for package in PACKAGES for path in (REPO / package).rglob("*.py")}


def imports_of(path: Path, modules: dict[str, Path]) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) of every import of a project module in `path`."""
    found = []
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, None, node.lineno) for alias in node.names if alias.name.split(".")[0] in PACKAGES]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            if base.split(".")[0] not in PACKAGES:
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append((submodule, None, node.lineno) if submodule in modules else (base, alias.name, node.lineno))
    return found


def import_graph() -> dict[str, set[str]]:
    modules = project_modules()
    return {name: {target for target, _, _ in imports_of(path, modules) if target in modules and target != name}
            for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
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
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    assert cycles(import_graph()) == []


def library_modules() -> dict[str, Path]:
    return {name: path for name, path in project_modules().items() if not name.startswith("benchmarks")}


def test_no_private_name_crosses_a_file():
    modules = project_modules()
    crossings = []
    for name, path in library_modules().items():
        tree = ast.parse(path.read_text(), str(path))
        imported = {}
        for target, symbol, line in imports_of(path, modules):
            if symbol is not None and symbol.startswith("_") and not symbol.startswith("__"):
                crossings.append(f"{name}:{line} imports {target}.{symbol}")
        for node in ast.walk(tree):  # `import pertok.x as m` / `from pertok import x as m`, then `m._y`
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for alias in node.names:
                    full = f"{node.module}.{alias.name}" if isinstance(node, ast.ImportFrom) else alias.name
                    if full in modules and full != name:
                        imported[alias.asname or alias.name.split(".")[-1]] = full
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in imported
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                crossings.append(f"{name}:{node.lineno} reads {imported[node.value.id]}.{node.attr}")
    assert crossings == []


def external_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def package_edges() -> list[tuple[str, str, str]]:
    """(importing module, its package, imported package) for every cross-package import."""
    graph = import_graph()
    return [(source, source.split(".")[0], target.split(".")[0]) for source, targets in graph.items()
            for target in targets if source.split(".")[0] != target.split(".")[0]]


@pytest.mark.parametrize("package, forbidden", [
    ("pertok", set(PACKAGES) - {"pertok"}),
    ("layers", set(PACKAGES) - {"layers"}),
    ("training", set(MODELS) | {"experiments", "benchmarks", "evaluation"}),
    # A model package imports layers and pertok only (the harness duck-types its Task).
    *[(model, set(PACKAGES) - {model, "layers", "pertok"}) for model in MODELS],
    ("evaluation", set(MODELS) | {"training", "experiments", "benchmarks", "layers"}),
])
def test_packages_import_only_what_their_layer_allows(package, forbidden):
    wrong = [f"{source} imports {target}" for source, owner, target in package_edges()
             if owner == package and target in forbidden]
    assert wrong == []


def test_pertok_needs_no_jax():
    users = [name for name, path in project_modules().items()
             if name.split(".")[0] == "pertok" and external_imports(path) & {"jax", "jaxlib", "flax", "optax"}]
    assert users == []


def pertok_rank(module: str) -> tuple[int, int] | None:
    """(layer, position): the core's modules by PERTOK_CORE, then each part above the core."""
    parts = module.split(".")
    if parts[0] != "pertok":
        return None
    head = parts[1] if len(parts) > 1 else "__init__"
    if head in PERTOK_CORE:
        return 0, PERTOK_CORE.index(head)
    if head in PERTOK_ABOVE_CORE:
        return 1 + PERTOK_ABOVE_CORE.index(head), 0
    return None


def test_every_pertok_module_has_a_place_in_the_layering():
    unplaced = [name for name in project_modules() if name.startswith("pertok") and pertok_rank(name) is None
                and not name.startswith("pertok.synthetic")]
    assert unplaced == []


def test_pertok_imports_run_downward():
    upward = []
    for source, targets in import_graph().items():
        if not source.startswith("pertok"):
            continue
        for target in targets:
            if source.startswith("pertok.synthetic") or target.startswith("pertok.synthetic"):
                inside = source.startswith("pertok.synthetic") == target.startswith("pertok.synthetic")
                if not inside and source not in ("pertok.cli",):  # the CLI writes the corpus on request
                    upward.append(f"{source} -> {target}")
                continue
            source_rank, target_rank = pertok_rank(source), pertok_rank(target)
            same_part = source_rank[0] == target_rank[0] and source_rank[0] > 0
            if target_rank >= source_rank and not same_part:
                upward.append(f"{source} -> {target}")
    assert upward == []
