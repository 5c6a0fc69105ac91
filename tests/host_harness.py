"""The real ComfyUI host (built by scripts/build_host.sh) driven in-process, as main.py
drives it: cli args set before `comfy` is imported, PromptServer and custom nodes
initialised, prompts validated and run by execution.PromptExecutor."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from tools.comfy_host import HOSTS, require_host

# which built host the in-process tests drive (tests/test_host_versions.py reruns them on 0.8.0)
VERSION = os.environ.get("UNIVG_HOST_VERSION", "0.3.75")
HOST = HOSTS[VERSION][0]


@dataclass
class Run:
    success: bool
    messages: list = field(default_factory=list)
    outputs: dict = field(default_factory=dict)
    validation: tuple | None = None

    def error(self) -> str:
        if self.validation is not None:
            ok, error, _, node_errors = self.validation
            details = [f"{e['message']}: {e.get('details', '')}" for n in node_errors.values() for e in n["errors"]]
            return "; ".join([error.get("message", "") if isinstance(error, dict) else str(error)] + details)
        for event, data in self.messages:
            if event == "execution_error":
                return f"{data['node_type']}: {data['exception_message']}"
            if event == "execution_interrupted":
                return "interrupted"
        return ""


def release_free_memory() -> None:
    """Hand glibc's free heap pages back to the system, so the resident set shows what is held."""
    import ctypes

    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


class InProcessHost:
    def __init__(self, base: Path):
        require_host(VERSION)
        if str(HOST) not in sys.path:
            sys.path.insert(0, str(HOST))
        from comfy.cli_args import args

        args.cpu = True
        args.base_directory = str(base)
        args.disable_auto_launch = True
        import folder_paths  # noqa: F401  (reads the base directory)
        import utils.extra_config  # noqa: F401  (main.py imports it before server)
        import execution
        import nodes
        import server

        self.base = Path(base)
        self.execution, self.nodes = execution, nodes
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.server = server.PromptServer(self.loop)
        self.loop.run_until_complete(nodes.init_extra_nodes(init_custom_nodes=True, init_api_nodes=False))
        self.executor = execution.PromptExecutor(
            self.server, cache_type=execution.CacheType.CLASSIC, cache_args={"lru": 0, "ram": 0}
        )

    @property
    def output_dir(self) -> Path:
        import folder_paths

        return Path(folder_paths.get_output_directory())

    def release(self) -> None:
        """Drop what earlier prompts left in memory: the executor's cached node outputs (models,
        CLIP, VAE), ComfyUI's list of loaded models, and the allocator's free pages."""
        import gc

        import comfy.model_management

        self.executor.reset()
        comfy.model_management.unload_all_models()
        gc.collect()
        comfy.model_management.soft_empty_cache()
        release_free_memory()

    def run(self, api: dict) -> Run:
        prompt_id = uuid.uuid4().hex
        validation = self.loop.run_until_complete(self.execution.validate_prompt(prompt_id, api, None))
        if not validation[0]:
            return Run(False, validation=validation)
        self.executor.execute(api, prompt_id, {"client_id": None}, validation[2])
        return Run(self.executor.success, list(self.executor.status_messages), dict(self.executor.history_result["outputs"]))
