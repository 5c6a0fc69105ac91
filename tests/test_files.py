"""Atomic file writes: every checkpoint, training state, cache entry and tower goes through one."""

from __future__ import annotations

import pytest

from univg_core.files import ReadOnce, write_atomically


def test_a_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "new" / "folder" / "file.bin"
    write_atomically(path, lambda partial: partial.write_bytes(b"first"))
    write_atomically(path, lambda partial: partial.write_bytes(b"second"))
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["file.bin"]


@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_partial(tmp_path, failure):
    path = tmp_path / "file.bin"
    path.write_bytes(b"old")
    (tmp_path / "file.bin.partial").write_bytes(b"left by a killed process")

    def half_then_fail(partial):
        partial.write_bytes(b"ha")
        raise failure

    with pytest.raises(type(failure)):
        write_atomically(path, half_then_fail)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin"]


def test_read_once_computes_again_only_for_a_changed_file(tmp_path):
    path = tmp_path / "tower.safetensors"
    path.write_bytes(b"one")
    memo, calls = ReadOnce(), []

    def compute():
        calls.append(1)
        return path.read_bytes()

    assert memo.value([path], compute) == memo.value([path], compute) == b"one" and len(calls) == 1
    assert memo.value([path], compute, "fp16") == b"one" and len(calls) == 2  # another key for other settings
    write_atomically(path, lambda partial: partial.write_bytes(b"two"))
    assert memo.value([path], compute) == b"two" and len(calls) == 3
    assert memo.value([tmp_path / "missing"], lambda: "computed") == "computed"
