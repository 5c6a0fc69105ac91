"""Start the project's ComfyUI host headless and talk to it over HTTP (127.0.0.1 only).

The host is built by scripts/build_host.sh into .host/ComfyUI; a "base directory" holds
custom_nodes/ (a link to this pack), models/, input/ and output/.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOST = ROOT / ".host" / "ComfyUI"
PYTHON = ROOT / ".venv" / "bin" / "python"
# every host scripts/build_host.sh builds: version -> (ComfyUI tree, its Python)
HOSTS = {
    "0.3.75": (HOST, PYTHON),
    "0.8.0": (ROOT / ".host" / "ComfyUI-0.8.0", ROOT / ".host" / "venv-0.8.0" / "bin" / "python"),
}


class HostError(RuntimeError):
    pass


class PromptRejected(HostError):
    """POST /prompt refused the graph (validation errors); `details` is the server's JSON."""

    def __init__(self, details: dict):
        self.details = details
        error = details.get("error", {})
        node_errors = details.get("node_errors", {})
        parts = [error.get("message", "prompt rejected"), error.get("details", "")]
        for node_id, info in node_errors.items():
            for e in info.get("errors", []):
                parts.append(f"node {node_id} ({info.get('class_type')}): {e.get('message')}: {e.get('details')}")
        super().__init__("; ".join(p for p in parts if p))


def require_host(version: str = "0.3.75") -> None:
    tree, python = HOSTS[version]
    if not (tree / "main.py").is_file() or not python.is_file():
        raise HostError(f"no ComfyUI {version} host at {tree}: run `bash scripts/build_host.sh` first")


def prepare_base(base: Path, models: Path | None = None, output: Path | None = None) -> Path:
    """A ComfyUI base directory with this pack installed; `models`/`output` are linked in when given."""
    base = Path(base)
    (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
    link = base / "custom_nodes" / "comfyui-univg"
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    for name, target in (("models", models), ("output", output)):
        path = base / name
        if target is not None and not path.exists():
            Path(target).mkdir(parents=True, exist_ok=True)
            path.symlink_to(Path(target).resolve(), target_is_directory=True)
    for sub in ("models/univg", "models/checkpoints", "input", "output", "user"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    return base


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, base: Path, port: int | None = None, log_path: Path | None = None, extra_args: tuple = (),
                 version: str = "0.3.75", cpu: bool = True):
        require_host(version)
        self.tree, self.python = HOSTS[version]
        self.extra_args = (("--cpu",) if cpu else ()) + tuple(extra_args)
        self.base = Path(base)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path or self.base / "comfyui.log")
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 900.0) -> "Server":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        command = [str(self.python), "main.py", "--listen", "127.0.0.1", "--port", str(self.port),
                   "--disable-auto-launch", "--base-directory", str(self.base.resolve()), *self.extra_args]
        self.process = subprocess.Popen(command, cwd=self.tree, stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HostError(f"ComfyUI exited with {self.process.returncode}; log:\n{self.log_tail()}")
            try:
                get_json(self.url, "/system_stats", timeout=2)
                return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                time.sleep(0.5)
        self.stop()
        raise HostError(f"ComfyUI did not answer within {timeout:.0f} s; log:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)

    def __enter__(self) -> "Server":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# ------------------------------------------------------------------------------ HTTP


def _request(url: str, path: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 30):
    request = urllib.request.Request(url + path, data=data, headers=headers or {})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        body = response.read()
    return json.loads(body) if body else {}


def get_json(url: str, path: str, timeout: float = 30):
    return _request(url, path, timeout=timeout)


def post_json(url: str, path: str, payload: dict, timeout: float = 30):
    return _request(url, path, json.dumps(payload).encode(), {"Content-Type": "application/json"}, timeout)


def queue_prompt(url: str, api: dict, client_id: str | None = None) -> str:
    try:
        answer = post_json(url, "/prompt", {"prompt": api, "client_id": client_id or uuid.uuid4().hex})
    except urllib.error.HTTPError as error:
        body = error.read().decode(errors="replace")
        try:
            raise PromptRejected(json.loads(body)) from None
        except json.JSONDecodeError:
            raise HostError(f"POST /prompt failed with {error.code}: {body[:500]}") from None
    return answer["prompt_id"]


def wait_for(url: str, prompt_id: str, timeout: float = 3600, poll: float = 0.5) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            history = get_json(url, f"/history/{prompt_id}", timeout=120)
        except (TimeoutError, urllib.error.URLError):  # a busy CPU-bound server answers late
            time.sleep(poll)
            continue
        entry = history.get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None and entry["status"].get("status_str"):
            return entry
        time.sleep(poll)
    raise HostError(f"prompt {prompt_id} did not finish within {timeout:.0f} s")


def interrupt(url: str) -> None:
    post_json(url, "/interrupt", {})


def upload_image(url: str, path: Path) -> str:
    """POST /upload/image; returns the name to put in a LoadImage node."""
    boundary = uuid.uuid4().hex
    data = Path(path).read_bytes()
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{Path(path).name}\"\r\n"
        f"Content-Type: application/octet-stream\r\n\r\n"
    ).encode() + data + (
        f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"overwrite\"\r\n\r\ntrue\r\n--{boundary}--\r\n"
    ).encode()
    answer = _request(url, "/upload/image", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    return f"{answer['subfolder']}/{answer['name']}" if answer.get("subfolder") else answer["name"]


def status_of(entry: dict) -> tuple[str, str]:
    """('success' | 'error' | 'interrupted', message) of a history entry."""
    status = entry.get("status", {})
    for event, data in status.get("messages", []):
        if event == "execution_error":
            node = f"{data.get('node_type')} (node {data.get('node_id')})"
            return "error", f"{node}: {data.get('exception_type')}: {data.get('exception_message', '').strip()}"
        if event == "execution_interrupted":
            return "interrupted", "interrupted"
    return ("success", "") if status.get("status_str") == "success" else ("error", "failed without a message")


def output_files(entry: dict, output_dir: Path) -> list[Path]:
    files = []
    for node_output in entry.get("outputs", {}).values():
        for kind in ("images", "gifs", "videos", "animated"):
            for item in node_output.get(kind, []) or []:
                if isinstance(item, dict) and item.get("filename") and item.get("type", "output") == "output":
                    files.append(Path(output_dir) / item.get("subfolder", "") / item["filename"])
    return files


if __name__ == "__main__":
    print(HOST, "ready" if (HOST / "main.py").is_file() else "missing", file=sys.stderr)
