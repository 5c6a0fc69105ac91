"""ARCHITECTURE.md's dependency line is what the imports do: univg_core's packages import only
the layers to their right, and only nodes/ imports ComfyUI."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE = ROOT / "univg_core"
COMFY_MODULES = {"comfy", "comfy_extras", "folder_paths", "nodes", "server", "execution", "comfy_api"}


def documented_layers() -> dict[str, int]:
    """`a` -> `b`, `c` -> `d`: a is layer 0, b and c layer 1, d layer 2."""
    text = (ROOT / "ARCHITECTURE.md").read_text()
    line = re.search(r"Dependencies point one way.*?:(.*?)\.\s", text, re.S).group(1)
    return {name: layer for layer, group in enumerate(line.split("->")) for name in re.findall(r"`(\w+)`", group)}


def package_of(path: Path) -> str:
    return path.relative_to(CORE).parts[0].removesuffix(".py")


def imported_packages(path: Path) -> set[str]:
    """univg_core packages that a module of univg_core imports (relative imports that leave its package)."""
    depth = len(path.relative_to(CORE).parts) - 1
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            up = node.level - 1
            if up == depth and node.module:
                found.add(node.module.split(".")[0])
            elif up < depth:
                found.add(path.relative_to(CORE).parts[0])
    return found - {package_of(path)}


def test_the_documented_layers_name_every_package():
    packages = {package_of(path) for path in CORE.rglob("*.py")} - {"__init__"}
    assert set(documented_layers()) == packages


def test_every_import_points_to_a_layer_to_its_right():
    layers = documented_layers()
    wrong = [f"{path.relative_to(ROOT)} -> {target}"
             for path in CORE.rglob("*.py") if package_of(path) in layers
             for target in imported_packages(path) if layers[target] <= layers[package_of(path)]]
    assert not wrong, wrong


def test_only_nodes_import_comfyui():
    offenders = []
    for path in CORE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module else []
            offenders += [f"{path.relative_to(ROOT)}: {name}" for name in names if name.split(".")[0] in COMFY_MODULES]
    assert not offenders, offenders
