"""Convert between ComfyUI's two workflow formats using the host's node definitions.

API format (what POST /prompt takes): {"id": {"class_type", "inputs", "_meta"}}.
UI format (what a person drags into the editor): {"nodes", "links", ... "version": 0.4};
widget values sit in `widgets_values` in the order of the node's INPUT_TYPES, with one
extra value after a seed-like INT (the "control after generate" widget).

`object_info` has the shape of GET /object_info: {class: {"input": {"required": {...},
"optional": {...}}, "output": [...], "output_name": [...]}}.
"""

from __future__ import annotations

import copy
from collections import defaultdict

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


def object_info_from_classes(mapping: dict) -> dict:
    info = {}
    for name, cls in mapping.items():
        returns = list(getattr(cls, "RETURN_TYPES", ()))
        info[name] = {
            "input": cls.INPUT_TYPES(),
            "output": returns,
            "output_name": list(getattr(cls, "RETURN_NAMES", None) or returns),
        }
    return info


def _ordered_inputs(spec: dict):
    for section in ("required", "optional"):
        for name, definition in (spec.get(section) or {}).items():
            yield name, definition


def _is_widget(definition) -> bool:
    kind = definition[0]
    return isinstance(kind, list) or kind in WIDGET_TYPES


def _has_control(name: str, definition) -> bool:
    options = definition[1] if len(definition) > 1 and isinstance(definition[1], dict) else {}
    return definition[0] == "INT" and (options.get("control_after_generate") or name in ("seed", "noise_seed"))


def _default(definition):
    kind = definition[0]
    options = definition[1] if len(definition) > 1 and isinstance(definition[1], dict) else {}
    if "default" in options:
        return options["default"]
    if isinstance(kind, list):
        return kind[0] if kind else None
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}.get(kind)


def _node_info(info: dict, class_type: str) -> dict:
    if class_type not in info:
        raise KeyError(f"node type {class_type!r} is not installed on this ComfyUI host")
    return info[class_type]


def _depths(api: dict) -> dict[str, int]:
    depth: dict[str, int] = {}

    def visit(node_id: str, seen=()) -> int:
        if node_id in depth:
            return depth[node_id]
        if node_id in seen:
            raise ValueError(f"the workflow has a cycle through node {node_id}")
        parents = [v[0] for v in api[node_id]["inputs"].values() if isinstance(v, list) and len(v) == 2]
        depth[node_id] = 1 + max((visit(str(p), seen + (node_id,)) for p in parents), default=-1)
        return depth[node_id]

    for node_id in api:
        visit(node_id)
    return depth


def api_to_ui(api: dict, info: dict) -> dict:
    depth = _depths(api)
    order = sorted(api, key=lambda n: (depth[n], int(n)))
    column_rows: dict[int, int] = defaultdict(int)
    links, nodes = [], {}
    outputs_links: dict[tuple[str, int], list[int]] = defaultdict(list)
    for index, node_id in enumerate(order):
        node = api[node_id]
        node_info = _node_info(info, node["class_type"])
        inputs, widgets = [], []
        for name, definition in _ordered_inputs(node_info["input"]):
            value = node["inputs"].get(name)
            if _is_widget(definition):
                if isinstance(value, list):
                    raise ValueError(f"node {node_id}: widget input {name!r} is linked; not supported by this converter")
                widgets.append(_default(definition) if value is None else value)
                if _has_control(name, definition):
                    widgets.append("fixed")
                continue
            kind = definition[0]
            link_id = None
            if isinstance(value, list):
                link_id = len(links) + 1
                source, slot = str(value[0]), int(value[1])
                links.append([link_id, int(source), slot, int(node_id), len(inputs), kind])
                outputs_links[source, slot].append(link_id)
            inputs.append({"name": name, "type": kind, "link": link_id})
        column = depth[node_id]
        row = column_rows[column]
        column_rows[column] += 1
        entry = {
            "id": int(node_id),
            "type": node["class_type"],
            "pos": [40 + 420 * column, 40 + 330 * row],
            "size": [380, 60 + 26 * (len(inputs) + len(widgets))],
            "flags": {},
            "order": index,
            "mode": 0,
            "inputs": inputs,
            "outputs": [],
            "properties": {"Node name for S&R": node["class_type"]},
            "widgets_values": widgets,
        }
        title = node.get("_meta", {}).get("title")
        if title:
            entry["title"] = title
        nodes[node_id] = entry
    for node_id, entry in nodes.items():
        node_info = info[api[node_id]["class_type"]]
        entry["outputs"] = [
            {"name": name, "type": kind, "links": outputs_links.get((node_id, slot), []), "slot_index": slot}
            for slot, (kind, name) in enumerate(zip(node_info["output"], node_info["output_name"]))
        ]
    return {
        "last_node_id": max(int(n) for n in api),
        "last_link_id": len(links),
        "nodes": [nodes[n] for n in order],
        "links": links,
        "groups": [],
        "config": {},
        "extra": {},
        "version": 0.4,
    }


def ui_to_api(ui: dict, info: dict) -> dict:
    if "nodes" not in ui or "links" not in ui:
        raise ValueError("not a UI-format workflow: expected 'nodes' and 'links'")
    link_sources = {link[0]: (str(link[1]), int(link[2])) for link in ui["links"]}
    api = {}
    for node in ui["nodes"]:
        if node.get("mode", 0) in (2, 4):  # muted or bypassed
            continue
        node_info = _node_info(info, node["type"])
        linked = {i["name"]: i.get("link") for i in node.get("inputs", []) if i.get("link") is not None}
        values = list(node.get("widgets_values") or [])
        inputs = {}
        for name, definition in _ordered_inputs(node_info["input"]):
            if _is_widget(definition):
                if values:
                    inputs[name] = values.pop(0)
                if _has_control(name, definition) and values:
                    values.pop(0)
            if name in linked:
                inputs[name] = list(link_sources[linked[name]])
        entry = {"class_type": node["type"], "inputs": inputs}
        if node.get("title"):
            entry["_meta"] = {"title": node["title"]}
        api[str(node["id"])] = entry
    return api


def without_meta(api: dict) -> dict:
    stripped = copy.deepcopy(api)
    for node in stripped.values():
        node.pop("_meta", None)
    return stripped
