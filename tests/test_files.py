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


def test_the_partial_file_of_a_process_that_ended_is_removed_and_a_running_writers_kept(tmp_path):
    import subprocess
    import sys

    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / f"file.bin.{ended.stdout.strip()}.partial").write_bytes(b"killed mid-write")
        (tmp_path / f"file.bin.{running.pid}.partial").write_bytes(b"being written")
        (tmp_path / "file.bin.partial").write_bytes(b"left by an older version")
        write_atomically(tmp_path / "file.bin", lambda partial: partial.write_bytes(b"new"))
        assert sorted(p.name for p in tmp_path.iterdir()) == ["file.bin", f"file.bin.{running.pid}.partial"]
    finally:
        running.kill()
        running.wait()


def _write_slowly(path, payload, barrier):
    import time

    def write(partial):
        partial.write_bytes(payload)
        barrier.wait(timeout=30)  # both partial files exist now
        time.sleep(0.2)

    write_atomically(path, write)


def test_two_processes_writing_one_file_at_once_both_finish_and_leave_one_whole_file(tmp_path):
    import multiprocessing

    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(2)
    payloads = [bytes([n]) * 1_000_000 for n in (1, 2)]
    writers = [context.Process(target=_write_slowly, args=(tmp_path / "tower.bin", payload, barrier))
               for payload in payloads]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(timeout=60)
    assert [writer.exitcode for writer in writers] == [0, 0]
    assert (tmp_path / "tower.bin").read_bytes() in payloads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tower.bin"]
