"""Print a running prompt's progress from ComfyUI's websocket (/ws), for headless renders.

ComfyUI sends "executing" when a node starts and "progress" from every ProgressBar to the
client whose id queued the prompt; the watcher connects with that id before the prompt is
queued, so no event is missed. aiohttp is a ComfyUI dependency, so it is in the host's venv.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Callable


@dataclass
class ProgressLog:
    """What has been printed so far, so steps are reported at most every `interval` seconds."""

    node_types: dict[str, str]
    interval: float = 10.0
    started: dict[str, float] = field(default_factory=dict)
    last_printed: dict[str, float] = field(default_factory=dict)

    def node(self, node_id) -> str:
        return f"{self.node_types.get(str(node_id), 'node')} (node {node_id})"

    def describe(self, event: str, data: dict, now: float) -> str | None:
        """The line to print for one websocket event, or None when there is nothing new to say."""
        if event == "execution_start":
            return "started"
        if event == "execution_cached" and data.get("nodes"):
            return "cached: " + ", ".join(self.node(n) for n in data["nodes"])
        if event == "executing":
            if data.get("node") is None:
                return "finished"
            self.started[str(data["node"])] = now
            return f"running {self.node(data['node'])}"
        if event == "progress":
            node_id, value, total = str(data.get("node")), int(data.get("value", 0)), int(data.get("max", 0))
            done = value >= total
            if not done and now - self.last_printed.get(node_id, float("-inf")) < self.interval:
                return None
            self.last_printed[node_id] = now
            elapsed = now - self.started.setdefault(node_id, now)
            rate = f", {elapsed / value:.1f} s each" if value > 0 and elapsed > 0 else ""
            return f"{self.node(node_id)}: {value}/{total}{rate}"
        if event == "execution_error":
            return f"error in {self.node(data.get('node_id'))}: {data.get('exception_message', '').strip()}"
        if event == "execution_interrupted":
            return f"interrupted in {self.node(data.get('node_id'))}"
        return None


class ProgressWatcher:
    """Listens on ws://.../ws?clientId=... in a thread and prints each line `describe` makes.

    Use as a context manager around queue_prompt(..., client_id=watcher.client_id) and the wait.
    A lost connection only stops the printing; the render does not depend on it.
    """

    def __init__(self, url: str, node_types: dict[str, str], print_line: Callable[[str], None] = print,
                 interval: float = 10.0):
        self.url = url
        self.client_id = uuid.uuid4().hex
        self.log = ProgressLog({str(k): v for k, v in node_types.items()}, interval)
        self.print_line = print_line
        self.previews = 0  # binary preview images received (the server sends them with --preview-method)
        self.connected = threading.Event()
        self.error: BaseException | None = None
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="univg-progress", daemon=True)

    def __enter__(self) -> "ProgressWatcher":
        self._thread.start()
        self.connected.wait(timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        if self._stop is not None and self._thread.is_alive():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the listener ended (and closed its loop) meanwhile
                pass
        self._thread.join(timeout=10)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._listen())
        except Exception as error:  # printing progress must never fail the render
            self.error = error
        finally:
            self.connected.set()
            self._loop.close()

    async def _listen(self) -> None:
        import aiohttp

        self._stop = asyncio.Event()
        ws_url = self.url.replace("http://", "ws://", 1) + f"/ws?clientId={self.client_id}"
        async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:  # no heartbeat: a busy CPU-bound server answers pings late
            self.connected.set()
            stop = asyncio.ensure_future(self._stop.wait())
            while not self._stop.is_set():
                receive = asyncio.ensure_future(ws.receive())
                await asyncio.wait({receive, stop}, return_when=asyncio.FIRST_COMPLETED)
                if not receive.done():
                    receive.cancel()
                    break
                message = receive.result()
                if message.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING,
                                    aiohttp.WSMsgType.ERROR):
                    break
                if message.type == aiohttp.WSMsgType.BINARY:
                    self.previews += 1
                    continue
                if message.type != aiohttp.WSMsgType.TEXT:
                    continue
                payload = json.loads(message.data)
                line = self.log.describe(payload.get("type", ""), payload.get("data") or {}, time.monotonic())
                if line:
                    self.print_line(line)
            stop.cancel()
