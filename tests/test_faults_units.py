"""The pieces under the fault handling, without a trainer: checksums, the newest-intact choice,
what counts as a full disk, and the one-line readers."""

from __future__ import annotations

import errno
import json

import pytest

from flax_cnn.checkpoints import checksums
from flax_cnn.runtime.faults import FileError, is_disk_full
from flax_cnn.runtime.files import read_json, read_safetensors
from flax_cnn.checkpoints.resume import restore_newest_intact


def _checkpoint(root, step: int, payload: bytes = b"0123456789") -> None:
    d = root / str(step)
    (d / "state").mkdir(parents=True)
    (d / "state" / "data").write_bytes(payload)
    (d / "meta.json").write_text(json.dumps({"step": step}))
    checksums.write(d)


def test_checksums_find_a_truncated_a_flipped_and_a_missing_file(tmp_path):
    _checkpoint(tmp_path, 1)
    d = tmp_path / "1"
    assert checksums.verify(d) is True
    (d / "state" / "data").write_bytes(b"0123456788")  # same size, one byte changed
    with pytest.raises(checksums.Damaged, match=r"^state/data does not match its checksum$"):
        checksums.verify(d)
    (d / "state" / "data").write_bytes(b"01")
    with pytest.raises(checksums.Damaged, match=r"^state/data is 2 bytes, 10 were written$"):
        checksums.verify(d)
    (d / "state" / "data").unlink()
    with pytest.raises(checksums.Damaged, match=r"^state/data is missing$"):
        checksums.verify(d)
    (d / checksums.NAME).write_text('{"files": ')
    with pytest.raises(checksums.Damaged, match=r"^checksums.json is unreadable \(JSONDecodeError\)$"):
        checksums.verify(d)
    (d / checksums.NAME).unlink()
    assert checksums.verify(d) is False  # nothing recorded: the caller restores it unverified


def _read(root):
    return lambda step: json.loads((root / str(step) / "meta.json").read_text())


def test_the_newest_intact_checkpoint_is_restored_and_the_damaged_moved_aside(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (3, 6, 8):
        _checkpoint(root, step)
    (root / "8" / "state" / "data").write_bytes(b"x")
    (root / "6" / "meta.json").write_text("{")  # passes no checksum either
    logs = []
    step, meta = restore_newest_intact(root, [3, 6, 8], _read(root), log=logs.append)
    assert (step, meta) == (3, {"step": 3})
    assert logs[0] == f"checkpoint 8 in {root} is damaged (state/data is 1 byte, 10 were written): skipped"
    assert logs[1].startswith(f"checkpoint 6 in {root} is damaged (meta.json is 1 byte, ")
    assert logs[2] == ("resuming from checkpoint 3 instead; the damaged ones moved to "
                       f"{tmp_path / 'checkpoints.damaged'}")
    assert sorted(p.name for p in root.iterdir()) == ["3"]
    assert sorted(p.name for p in (tmp_path / "checkpoints.damaged").iterdir()) == ["6", "8"]


def test_a_restore_that_fails_after_the_checksums_pass_is_a_damaged_checkpoint(tmp_path):
    root = tmp_path / "checkpoints"
    for step in (3, 6):
        _checkpoint(root, step)

    def restore(step):
        if step == 6:
            raise ValueError("DATA_LOSS: Error reading 'opt_state.mu'\nmore detail")
        return step

    logs = []
    assert restore_newest_intact(root, [3, 6], restore, log=logs.append) == (3, 3)
    assert logs[0] == (f"checkpoint 6 in {root} is damaged (ValueError: DATA_LOSS: Error reading 'opt_state.mu'): "
                       "skipped")


def test_no_intact_checkpoint_moves_nothing(tmp_path):
    root = tmp_path / "checkpoints"
    _checkpoint(root, 3)
    (root / "3" / "state" / "data").write_bytes(b"")
    with pytest.raises(FileError, match=r"^--resume: no intact checkpoint in .*checkpoints \(step 3: state/data is 0 "
                                         r"bytes, 10 were written\); nothing was deleted\."):
        restore_newest_intact(root, [3], _read(root), log=lambda m: None)
    assert (root / "3" / "state" / "data").exists() and not (tmp_path / "checkpoints.damaged").exists()


def test_what_counts_as_a_full_disk():
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert is_disk_full(ValueError("RESOURCE_EXHAUSTED: Failed to write 373 bytes to file 27: No space left on "
                                   "device [os_error_code='28']"))  # tensorstore, as orbax raises it
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError as e:
            raise RuntimeError("save failed") from e
    except RuntimeError as wrapped:
        assert is_disk_full(wrapped)
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert not is_disk_full(ValueError("OUT_OF_RANGE: Error reading"))


def test_readers_name_the_file_and_the_fault(tmp_path):
    with pytest.raises(FileError, match=r"^--model .*nope.json: no such file$"):
        read_json(tmp_path / "nope.json", what="--model")
    with pytest.raises(FileError, match=r"^--model .*: is a directory, not a file$"):
        read_json(tmp_path, what="--model")
    (tmp_path / "t.json").write_text('{"a": [1, 2')
    with pytest.raises(FileError, match=r"t.json: not valid JSON \(Expecting ',' delimiter at line 1 column 12; "
                                        r"truncated or damaged\?\)$"):
        read_json(tmp_path / "t.json")
    (tmp_path / "w.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}")
    with pytest.raises(FileError, match=r"w.safetensors: not a readable safetensors file \(SafetensorError: "):
        read_safetensors(tmp_path / "w.safetensors")
