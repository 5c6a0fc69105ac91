"""Glue for this machine's CPU torch, installed into the project's .venv by scripts/setup.sh
(never part of the node pack).

The registry's torchvision wheels are CUDA-linked and their `_C` extension does not load
beside the CPU torch; torchvision's meta registrations then fail on import because the
operators `torchvision::nms` / `torchvision::qnms` do not exist. Just before torchvision is
first imported, this defines those two operators with a CPU implementation when (and only
when) the extension cannot be loaded. A .pth file imports this module at interpreter start;
torch itself is imported only when torchvision is.
"""

import importlib.abc
import importlib.util
import os
import sys


def _greedy_nms(boxes, scores, iou_threshold):
    import torch

    order = scores.argsort(descending=True)
    keep = []
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1).clamp(min=0) * (y2 - y1).clamp(min=0)
    while order.numel():
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = (torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest])).clamp(min=0)
        h = (torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest])).clamp(min=0)
        inter = w * h
        iou = inter / (areas[i] + areas[rest] - inter).clamp(min=1e-12)
        order = rest[iou <= iou_threshold]
    return torch.stack(keep) if keep else torch.empty(0, dtype=torch.long, device=boxes.device)


_LIBRARY = None


def _ensure_ops():
    global _LIBRARY
    import torch

    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return
    folder = os.path.dirname(spec.origin)
    extensions = [f for f in os.listdir(folder) if f.startswith("_C") and f.endswith((".so", ".pyd"))]
    try:
        for name in extensions:
            torch.ops.load_library(os.path.join(folder, name))
        if extensions and hasattr(torch.ops.torchvision, "nms"):
            return
    except Exception:
        pass
    if _LIBRARY is not None:
        return
    _LIBRARY = torch.library.Library("torchvision", "DEF")
    for op in ("nms", "qnms"):
        _LIBRARY.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
        _LIBRARY.impl(op, _greedy_nms, "CPU")


class _BeforeTorchvision(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)
            _ensure_ops()
        return None


if not any(isinstance(finder, _BeforeTorchvision) for finder in sys.meta_path):
    sys.meta_path.insert(0, _BeforeTorchvision())
