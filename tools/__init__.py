"""Project tooling that talks to a ComfyUI host (workflow conversion, batch queueing, the
headless main job, demo checkpoints). Not part of the node pack, never imported by it."""
