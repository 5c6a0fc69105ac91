"""Regenerate the drag-in UI-format workflows (workflows/*.json) from their API-format
twins (workflows/api/*.json) with the host's node definitions.

    .venv/bin/python -m tools.make_ui_workflows
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from .comfy_host import ROOT, prepare_base
from .workflow_format import api_to_ui, object_info_from_classes


def main() -> int:
    sys.path.insert(0, str(ROOT / "tests"))
    from host_harness import InProcessHost

    with tempfile.TemporaryDirectory() as base:
        host = InProcessHost(prepare_base(Path(base)))
        info = object_info_from_classes(host.nodes.NODE_CLASS_MAPPINGS)
    for path in sorted((ROOT / "workflows" / "api").glob("*.json")):
        ui = api_to_ui(json.loads(path.read_text()), info)
        target = ROOT / "workflows" / path.name
        target.write_text(json.dumps(ui, indent=2) + "\n")
        print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
