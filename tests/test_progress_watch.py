"""The main job's progress lines from ComfyUI's websocket events (the live connection is
tested against the real server in test_host_server.py)."""

from __future__ import annotations

from tools.progress_watch import ProgressLog

NODES = {"4": "UniVGBaseSampler", "5": "UniVGVAEDecode"}


def test_a_render_reads_as_nodes_and_steps():
    log = ProgressLog(NODES, interval=10.0)
    events = [
        ("status", {"status": {}}, 0.0),
        ("execution_start", {"prompt_id": "p"}, 0.0),
        ("execution_cached", {"nodes": ["1", "2"], "prompt_id": "p"}, 0.0),
        ("executing", {"node": "4", "prompt_id": "p"}, 1.0),
        ("progress", {"value": 1, "max": 10, "node": "4"}, 3.0),
        ("progress", {"value": 2, "max": 10, "node": "4"}, 5.0),
        ("progress", {"value": 6, "max": 10, "node": "4"}, 13.0),
        ("progress", {"value": 10, "max": 10, "node": "4"}, 21.0),
        ("executing", {"node": "5", "prompt_id": "p"}, 21.0),
        ("progress", {"value": 8, "max": 8, "node": "5"}, 25.0),
        ("executing", {"node": None, "prompt_id": "p"}, 25.0),
    ]
    lines = [log.describe(event, data, now) for event, data, now in events]
    assert lines == [
        None,
        "started",
        "cached: node (node 1), node (node 2)",
        "running UniVGBaseSampler (node 4)",
        "UniVGBaseSampler (node 4): 1/10, 2.0 s each",
        None,  # within 10 s of the last line for node 4
        "UniVGBaseSampler (node 4): 6/10, 2.0 s each",
        "UniVGBaseSampler (node 4): 10/10, 2.0 s each",  # the last step is always reported
        "running UniVGVAEDecode (node 5)",
        "UniVGVAEDecode (node 5): 8/8, 0.5 s each",
        "finished",
    ]


def test_errors_and_interrupts_name_the_node():
    log = ProgressLog(NODES)
    assert log.describe("execution_error", {"node_id": "4", "exception_message": "width must be ...\n"}, 0.0) == (
        "error in UniVGBaseSampler (node 4): width must be ...")
    assert log.describe("execution_interrupted", {"node_id": "4"}, 0.0) == "interrupted in UniVGBaseSampler (node 4)"
    assert log.describe("progress_state", {"nodes": {}}, 0.0) is None


def test_a_server_that_cannot_be_reached_only_loses_the_progress_lines():
    import socket

    import aiohttp

    from tools.progress_watch import ProgressWatcher

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lines = []
    with ProgressWatcher(f"http://127.0.0.1:{port}", NODES, lines.append) as watch:
        pass
    assert isinstance(watch.error, aiohttp.ClientConnectionError), watch.error
    assert lines == []
