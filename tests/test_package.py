"""The pack as the ComfyUI registry and Manager see it: pyproject's registry fields, the icon, what
the published archive leaves out, and no code that the registry's standards forbid (exec, eval,
pip installs at run time) in what it ships."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = [ROOT / "__init__.py", *sorted((ROOT / "nodes").rglob("*.py")), *sorted((ROOT / "univg_core").rglob("*.py"))]


def test_pyproject_has_the_registrys_fields():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    name, version = project["project"]["name"], project["project"]["version"]
    assert "comfyui" not in name.lower() and re.fullmatch(r"[a-z0-9][a-z0-9-]*", name)
    assert re.fullmatch(r"\d+\.\d+\.\d+", version)
    comfy = project["tool"]["comfy"]
    assert comfy["PublisherId"] and comfy["DisplayName"]
    for folder in comfy["includes"]:
        assert list((ROOT / folder).glob("*.safetensors")), folder
    with Image.open(ROOT / "docs" / "icon.png") as icon:
        assert icon.size[0] == icon.size[1] <= 400


def test_the_published_archive_leaves_out_what_the_nodes_do_not_need():
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".comfyignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {"tests", "tools", "scripts", "docs"} <= ignored
    assert not ignored & {"nodes", "univg_core", "workflows", "example_workflows", "__init__.py", "requirements.txt"}
    for path in SHIPPED:  # nothing the archive keeps imports what it leaves out
        imported = {node.module for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom) and node.module}
        assert not {module for module in imported if module.split(".")[0] in ("tools", "tests")}, path


def test_the_shipped_code_has_no_exec_eval_or_runtime_installs():
    found = []
    for path in SHIPPED:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("exec", "eval", "compile", "__import__"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.id}()")
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and re.search(r"\bpip\b.*\binstall\b", node.value) \
                    and "python -m" not in node.value:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value[:60]!r}")
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [alias.name for alias in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
                if any(name.split(".")[0] in ("subprocess", "pip") for name in names):
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {names}")
    assert not found, found
