"""The core's layers: each sub-package imports only the layers below it, and no module
imports itself back through others (imports inside functions count too: a lazy import
that closes a cycle is still a cycle, it only fails later)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "arc_fabric_core"

# Lowest first: a module may import its own layer and the layers before it.
LAYERS = (
    "contract",  # what plugins implement: hook specs, model specs, parameters, schedules, errors
    "dispatch",  # finding plugins and calling their hooks, checking what they return
    "store",  # session documents and their files on disk
    "media",  # video files and previews
    "kit",  # helpers for plugins built on diffusers
    "runtime",  # devices, the model cache, plugin envs
    "metrics",
    "engine",  # sessions in memory and the denoising loop
    "operations",  # generate, resume, fork, edit, extend, rewind, hand-off, decode
    "jobs",  # the queue, its checks, executors and workers
    "server",
    "cli",
    "testing",  # the kit for plugin authors' tests: never imported by the rest
)


def _module(path: Path) -> str:
    parts = list(path.relative_to(CORE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from package import a, b`: the modules a and b when they are modules, else the package
            named = {f"{node.module}.{a.name}" for a in node.names}
            found |= named if named <= modules else {node.module}
    return {m for m in found if m in modules}


def _graph() -> dict[str, set[str]]:
    paths = {_module(p): p for p in CORE.rglob("*.py")}
    return {m: _imports(p, set(paths)) - {m} for m, p in paths.items()}


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and parts[1] in LAYERS) else None


def test_every_module_lives_in_a_layer() -> None:
    loose = sorted(
        m for m in _graph() if _layer(m) is None and m not in {"arc_fabric_core", "arc_fabric_core.__main__"}
    )
    assert not loose, f"modules outside the layer packages {LAYERS}: {loose}"
    unknown = sorted({_layer(m) for m in _graph()} - set(LAYERS) - {None})
    assert not unknown, f"sub-packages that are no layer (add them to LAYERS in order): {unknown}"


def test_layers_import_only_below() -> None:
    rank = {name: i for i, name in enumerate(LAYERS)}
    wrong = []
    for module, deps in _graph().items():
        own = _layer(module)
        if own is None:
            continue
        for dep in deps:
            other = _layer(dep)
            if other is not None and rank[other] > rank[own]:
                wrong.append(f"{module} ({own}) imports {dep} ({other})")
    assert not wrong, "imports of a higher layer:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles() -> None:
    graph = _graph()
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycles.append([*stack[stack.index(dep) :], dep])
            elif dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_packages_exist(layer: str) -> None:
    # A layer named here but missing would make the ranking above meaningless for it.
    assert (CORE / layer / "__init__.py").is_file(), f"arc_fabric_core/{layer}/ is missing"
