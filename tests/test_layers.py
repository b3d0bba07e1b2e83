"""The layer rule, checked from the imports (docs/architecture.md, "Layers"):

    mer_data core  <-  model  <-  pipelines  <-  mer_data.cli

The core (mer_data/ without cli.py, plus schemas/) imports nothing from model/ or pipelines/; model/ imports
only the core; pipelines/ imports the core and model/; only the CLI sits on top of everything. Every import
names the one installed package, `mer_data` (model/ is `mer_data.model`, and so on), and no two modules import
each other, directly or around a longer circle. Function-level imports count: a lazy import is still a
dependency."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# folder in the repository -> (import prefix, layer); a higher layer may import any lower one and its own.
FOLDERS = {"schemas": ("mer_data.schemas", 0), "mer_data": ("mer_data", 0), "model": ("mer_data.model", 1),
           "pipelines": ("mer_data.pipelines", 2)}
CLI = "mer_data.cli"
TOP_LAYER = 3
MAPPED_TOP_LEVEL = ("model", "pipelines", "schemas")


def module_files() -> dict[str, Path]:
    """Installed module name -> file, for every module of the distribution."""
    modules = {}
    for folder, (prefix, _) in FOLDERS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join([prefix, *parts])] = path
    return modules


def layer_of(module: str) -> int:
    if module == CLI:
        return TOP_LAYER
    best = max((p for p, _ in FOLDERS.values() if module == p or module.startswith(p + ".")), key=len)
    return next(layer for p, layer in FOLDERS.values() if p == best)


def imported_names(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file, relative ones resolved."""
    is_package = path.name == "__init__.py"
    names = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join(anchor + ([base] if base else []))
            names.append((node.lineno, base))
            # `from pkg import submodule` depends on the submodule
            names += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]
    return names


def internal_edges() -> dict[str, set[str]]:
    modules = module_files()
    edges: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        for _, name in imported_names(module, path):
            if name in modules and name != module:
                edges[module].add(name)
    return edges


def test_every_import_uses_the_one_installed_name():
    offenders = []
    for folder in (*FOLDERS, "tests", "benchmarks", "scripts"):
        for path in sorted((REPO / folder).rglob("*.py")):
            for line, name in imported_names("", path):
                if name.split(".")[0] in MAPPED_TOP_LEVEL:
                    offenders.append(f"{path.relative_to(REPO)}:{line}: imports {name}")
    assert not offenders, "import mer_data.model/... instead:\n" + "\n".join(offenders)


def test_no_module_imports_a_higher_layer():
    modules = module_files()
    offenders = []
    for module, path in modules.items():
        for line, name in imported_names(module, path):
            if name in modules and layer_of(name) > layer_of(module):
                offenders.append(f"{path.relative_to(REPO)}:{line}: {module} imports {name}")
    assert not offenders, "layer rule broken:\n" + "\n".join(sorted(set(offenders)))


def test_no_import_circle():
    edges = internal_edges()
    # A package's __init__ that re-exports its submodules is not a circle with them.
    edges = {m: {n for n in targets if not m.startswith(n + ".")} for m, targets in edges.items()}
    circles, state = [], {}

    def visit(module, stack):
        state[module] = "open"
        for target in sorted(edges[module]):
            if state.get(target) == "open":
                circles.append(" -> ".join(stack[stack.index(target):] + [target]))
            elif target not in state:
                visit(target, stack + [target])
        state[module] = "done"

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not circles, "import circles:\n" + "\n".join(circles)


@pytest.mark.parametrize("module", ["mer_data.corpora.iemocap", "mer_data.model.train", "mer_data.pipelines.convert"])
def test_layers_are_assigned_as_documented(module):
    # the rule above is only as good as the mapping from folders to layers
    assert layer_of(module) == {"mer_data": 0, "model": 1, "pipelines": 2}[module.split(".")[1]
                                                                           if module.count(".") > 1 and module.split(".")[1] in ("model", "pipelines") else "mer_data"]
