"""The imports go one way (docs/architecture.md): every module's imports, read with ``ast``
(also those inside functions and under ``TYPE_CHECKING``), may name only its own layer or a
lower one, and the module graph has no circle.

    cli -> tools -> app (config, wiring, service, ...) -> readers, mqtt, diagnostics, desk
        -> store -> contract -> domain -> agent.errors -> protocols -> dbc -> protocols.errors

``simulators`` stand beside the agent: they may use ``protocols`` and ``dbc`` only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("agent", "protocols", "dbc", "simulators")

#: Layer of a module, by the longest matching prefix; higher layers may import lower ones.
LAYERS: dict[str, int] = {
    "protocols.errors": -1,  # the root of the error tree: imports nothing of the project
    "dbc": 0,
    "protocols": 1,
    "agent.errors": 2,
    "agent": 2,  # the package itself: only __version__
    "agent.domain": 3,
    "agent.contract": 4,
    "agent.store": 5,
    "agent.readers": 6,
    "agent.mqtt": 6,
    "agent.diagnostics": 6,
    "agent.desk": 8,
    "agent.config": 7,
    "agent.wiring": 7,
    "agent.service": 7,
    "agent.pipeline": 7,
    "agent.logging_setup": 7,
    "agent.sd_notify": 7,
    "agent.metrics": 7,
    "agent.commands": 7,
    "agent.tools": 8,
    "agent.cli": 9,
    "agent.__main__": 10,
    "simulators": 2,
}

#: Packages side by side at one layer that must not import each other.
SIBLINGS_APART = {"agent.readers", "agent.mqtt", "agent.diagnostics"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            found[module_name(path)] = path
    return found


MODULES = modules()


def layer_key(name: str) -> str:
    best = ""
    for key in LAYERS:
        if (name == key or name.startswith(key + ".")) and len(key) > len(best):
            best = key
    if not best:
        raise AssertionError(f"{name}: no layer assigned in tests/test_layering.py")
    return best


def imported(name: str, path: Path) -> set[str]:
    """The project modules ``name`` imports (resolved to the longest existing module)."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            while candidate and candidate not in MODULES:
                candidate = candidate.rpartition(".")[0]
            if candidate and candidate != name:
                targets.add(candidate)
    return targets


GRAPH = {name: imported(name, path) for name, path in MODULES.items()}


def test_every_module_has_a_layer() -> None:
    for name in MODULES:
        layer_key(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down(name: str) -> None:
    own_key = layer_key(name)
    own = LAYERS[own_key]
    upward = []
    for target in sorted(GRAPH[name]):
        key = layer_key(target)
        if key == "agent" and target == "agent" and name.startswith("simulators"):
            upward.append(target)
            continue
        if name.startswith("simulators") and target.startswith("agent"):
            upward.append(target)
        elif key != own_key and LAYERS[key] > own:
            upward.append(target)
        elif key != own_key and own_key in SIBLINGS_APART and key in SIBLINGS_APART:
            upward.append(target)
    assert not upward, f"{name} (layer {own_key}) imports upward or sideways: {upward}"


def test_no_import_circle() -> None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(GRAPH.get(node, ())):
            if target.startswith(node + "."):
                continue  # a package's __init__ importing its own modules is not a circle
            if state.get(target) == 1:
                circle = stack[stack.index(target):] + [target]
                raise AssertionError("import circle: " + " -> ".join(circle))
            if target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for name in sorted(GRAPH):
        if name not in state:
            visit(name)


def test_paho_is_imported_by_the_link_alone() -> None:
    """One module knows paho (agent/mqtt/paho_link.py); every MQTT client of the product is
    built there, so TLS, credentials and protocol are set up one way."""
    importers = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n == "paho" or n.startswith("paho.") for n in names):
                importers.append(name)
                break
    assert sorted(importers) == ["agent.mqtt.paho_link"], importers
