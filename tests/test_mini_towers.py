"""UniVG Mini's fixed random text and vision towers: rebuilt bit for bit from the seed, and
able to tell the world's captions apart (the trained UNets read them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from univg_core.mini import towers
from univg_core.training.clip_towers import load_text_tower, load_vision_tower, tokenize

# sha256 of every tensor's name, shape, dtype and fp16 bytes; the trained UNets depend on these
TEXT_CHECKSUM = "fd0343f0f87f30b60e7b9cebb4cfa5fa75b6a643ae978a15abc860d8359916a5"
VISION_CHECKSUM = "70c0c325f3738bd4bb1e5ecbac0c94dcad0b31b69b52fa0303a7ca75db3fb704"


def test_the_raw_stream_and_its_floats_are_pinned():
    seed_sequence = np.random.SeedSequence([1, 2])
    raw = np.random.PCG64(seed_sequence).random_raw(3)
    assert raw.tolist() == [8271799387826207682, 7948369750201702571, 7747616451078592673]
    values = towers.uniform_with_std(3, 1 / 3**0.5, np.random.SeedSequence([1, 2]))
    # the top 24 bits of each raw value, scaled exactly into [-1, 1)
    expected = [(int(r) >> 40) / 2**23 - 1 for r in raw]
    assert values.dtype == np.float32 and values.tolist() == expected


def test_towers_rebuild_bit_for_bit():
    text = towers.text_tower()
    assert towers.tower_checksum(text) == TEXT_CHECKSUM
    assert sum(t.numel() for t in text.values()) == 354_032_640
    assert text["token_embedding.weight"].float().std().item() == pytest.approx(0.02, rel=0.01)
    del text
    vision = towers.vision_tower()
    assert towers.tower_checksum(vision) == VISION_CHECKSUM
    assert sum(t.numel() for t in vision.values()) == 632_076_800
    assert set(vision) == set(towers.vision_tower_shapes())


def test_a_changed_seed_or_weight_changes_the_checksum():
    shapes = {"transformer.resblocks.0.mlp.c_fc.weight": (8, 4), "ln_final.weight": (4,)}
    first = towers.build_tower(shapes, layers=1, seed=1)
    assert towers.tower_checksum(first) == towers.tower_checksum(towers.build_tower(shapes, layers=1, seed=1))
    assert towers.tower_checksum(first) != towers.tower_checksum(towers.build_tower(shapes, layers=1, seed=2))
    first["ln_final.weight"][0] = 2
    assert towers.tower_checksum(first) != towers.tower_checksum(towers.build_tower(shapes, layers=1, seed=1))


@torch.no_grad()
def test_the_random_towers_tell_the_worlds_conditions_apart():
    text = load_text_tower({"model." + k: v for k, v in towers.text_tower().items()})
    captions = ["a red circle moving right on a dark background", "a blue circle moving right on a dark background",
                "a red square moving left on a dark background", ""]
    tokens = text(tokenize(captions))
    # one changed word changes every token from it on by a good fraction of their size
    change = (tokens[0] - tokens[1]).norm(dim=-1) / tokens[0].norm(dim=-1)
    assert change[:2].max() == 0 and change[2:12].min() > 0.2, change[:12]
    assert (tokens[0] - tokens[2]).norm() / tokens[0].norm() > 0.2
    del text
    vision = load_vision_tower({"model." + k: v for k, v in towers.vision_tower().items()})
    red, blue = torch.zeros(2, 3, 64, 64), torch.zeros(1, 3, 64, 64)
    red[0, 0, 20:40, 20:40] = 1
    red[1, 0, 20:40, 24:44] = 1  # the same object a little to the right
    blue[0, 2, 20:40, 20:40] = 1
    features = vision(torch.cat([red, blue]))
    moved = (features[0] - features[1]).norm() / features[0].norm()
    recoloured = (features[0] - features[2]).norm() / features[0].norm()
    assert moved > 0.01 and recoloured > 0.01, (moved, recoloured)


@pytest.fixture
def small_towers(monkeypatch):
    """write_towers with two small towers in place of the 2 GB pair (any seed but the pinned one
    is checked against a fresh build)."""
    shapes = {"transformer.resblocks.0.mlp.c_fc.weight": (8, 4), "ln_final.weight": (4,)}
    builds = []

    def build(seed, progress=None):
        builds.append(seed)
        return towers.build_tower(shapes, layers=1, seed=seed, progress=progress)

    monkeypatch.setattr(towers, "text_tower", build)
    monkeypatch.setattr(towers, "vision_tower", build)
    return builds


def test_towers_are_built_once_and_linked_into_each_models_folder(small_towers, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = towers.write_towers(tmp_path / "a" / "text_encoders", tmp_path / "a" / "clip_vision", seed=7, cache=cache)
    second = towers.write_towers(tmp_path / "b" / "text_encoders", tmp_path / "b" / "clip_vision", seed=7, cache=cache)
    for path, name in zip(first + second, [towers.TEXT_FILE, towers.VISION_FILE] * 2):
        assert path.samefile(cache / name) and path.stat().st_nlink == 3  # one file on disk, three names
    builds = len(small_towers)
    towers.write_towers(tmp_path / "b" / "text_encoders", tmp_path / "b" / "clip_vision", seed=7, cache=cache)
    assert len(small_towers) - builds == 2  # only the checksums' reference builds: nothing written again

    # a damaged cache is rebuilt and the folder that asks gets the new file
    (cache / towers.TEXT_FILE).write_bytes(b"not a safetensors file")  # through the link: all three names
    text, _ = towers.write_towers(tmp_path / "a" / "text_encoders", tmp_path / "a" / "clip_vision", seed=7, cache=cache)
    assert text.samefile(cache / towers.TEXT_FILE)
    assert towers.tower_checksum(load_file(str(text))) == towers.tower_checksum(towers.build_tower(
        {"transformer.resblocks.0.mlp.c_fc.weight": (8, 4), "ln_final.weight": (4,)}, layers=1, seed=7))

    # where hard links fail (another file system), the file is copied
    def no_links(source, target):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(towers.os, "link", no_links)
    copied, _ = towers.write_towers(tmp_path / "c" / "text_encoders", tmp_path / "c" / "clip_vision", seed=7, cache=cache)
    assert not copied.samefile(cache / towers.TEXT_FILE)
    assert copied.read_bytes() == (cache / towers.TEXT_FILE).read_bytes()


def test_a_failed_tower_write_leaves_no_partial_file(monkeypatch, tmp_path):
    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    monkeypatch.setattr(towers, "text_tower", lambda seed, progress=None: {"ln_final.weight": torch.ones(4)})
    with pytest.raises(OSError, match="No space left"):
        towers.write_towers(tmp_path / "text", tmp_path / "vision", seed=7, cache=tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
