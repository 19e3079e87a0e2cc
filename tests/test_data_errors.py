"""Bad input: one DataError line naming the file and what is wrong; the CLI exits non-zero, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flax_cnn.data import DataError, load_cifar10
from tests.data_fixtures import binary_files, python_files, tiny_cifar, write_archive, write_dir

DATA = tiny_cifar()
REPO = Path(__file__).resolve().parents[1]


def _error(source, split="train") -> str:
    with pytest.raises(DataError) as e:
        load_cifar10(source, split)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_missing_dir(tmp_path):
    assert _error(tmp_path / "nope") == f"{tmp_path / 'nope'}: no such directory or archive"


def test_dir_without_cifar_files(tmp_path):
    assert _error(tmp_path).startswith(f"{tmp_path}: no CIFAR-10 files found")


def test_missing_batch_file(tmp_path):
    write_dir(tmp_path, binary_files(DATA))
    (tmp_path / "data_batch_3.bin").unlink()
    assert _error(tmp_path).startswith(f"{tmp_path / 'data_batch_3.bin'}: missing")
    assert load_cifar10(tmp_path, "test").images.shape[0] == 4  # the test split does not need it


def test_truncated_file(tmp_path):
    files = binary_files(DATA)
    files["data_batch_2.bin"] = files["data_batch_2.bin"][:-1]
    write_dir(tmp_path, files)
    assert _error(tmp_path) == (f"{tmp_path / 'data_batch_2.bin'}: size 12,291 bytes is not a positive multiple "
                                "of the 3,073-byte record (truncated or not a CIFAR-10 binary batch)")


def test_label_byte_out_of_range(tmp_path):
    files = binary_files(DATA)
    record = bytearray(files["test_batch.bin"])
    record[2 * 3073] = 12
    files["test_batch.bin"] = bytes(record)
    write_dir(tmp_path, files)
    assert _error(tmp_path, "test") == (f"{tmp_path / 'test_batch.bin'}: record 2 has label byte 12 "
                                        "(must be 0-9; 1 bad record(s))")


def test_wrong_meta_file(tmp_path):
    files = binary_files(DATA)
    files["batches.meta.txt"] = b"cat\ndog\n"
    write_dir(tmp_path, files)
    assert _error(tmp_path).endswith("batches.meta.txt: expected 10 class names, one a line, found 2")


# A pickle (protocol 0) whose only content is a call of os.system: loading it with pickle.load would
# run the command.
EVIL = b"cos\nsystem\n(S'touch PWNED'\ntR."


def test_pickle_that_imports_os_is_refused(tmp_path, monkeypatch):
    files = python_files(DATA)
    files["data_batch_4"] = EVIL
    write_dir(tmp_path, files)
    monkeypatch.chdir(tmp_path)
    message = _error(tmp_path)
    assert message.startswith(f"{tmp_path / 'data_batch_4'}: pickle refused global os.system")
    assert not (tmp_path / "PWNED").exists()


def test_pickle_with_wrong_content(tmp_path):
    files = python_files(DATA)
    files["test_batch"] = files["batches.meta"]  # a dict, but not a batch
    write_dir(tmp_path, files)
    assert "test_batch: missing key b'data'" in _error(tmp_path, "test")


def test_archive_errors(tmp_path):
    (tmp_path / "junk.tar.gz").write_bytes(b"not an archive at all")
    assert _error(tmp_path / "junk.tar.gz").startswith(f"{tmp_path / 'junk.tar.gz'}: not a readable tar archive")
    files = python_files(DATA)
    del files["data_batch_5"]
    archive = write_archive(tmp_path / "py.tar.gz", "cifar-10-batches-py", files)
    assert _error(archive) == f"{archive}: missing member cifar-10-batches-py/data_batch_5"
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:-200])
    assert _error(truncated).startswith(f"{truncated}: not a readable tar archive (truncated or corrupt")
    evil = write_archive(tmp_path / "evil.tar.gz", "cifar-10-batches-py", {**python_files(DATA), "test_batch": EVIL})
    assert _error(evil, "test").startswith(f"{evil}:cifar-10-batches-py/test_batch: pickle refused global os.system")


def test_bad_arguments():
    with pytest.raises(DataError, match="split must be one of train, test; got 'val'"):
        load_cifar10("anything", "val")
    with pytest.raises(DataError, match="limit must be >= 1"):
        load_cifar10("anything", limit=0)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "flax_cnn.data", *args], capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=120)


@pytest.mark.parametrize("make_bad, needle", [
    (lambda d: d / "missing", "missing: no such directory or archive"),
    (lambda d: write_dir(d, {**binary_files(DATA), "data_batch_1.bin": b"\x00" * 100}),
     "data_batch_1.bin: size 100 bytes is not a positive multiple"),
])
def test_cli_reports_one_line_without_traceback(tmp_path, make_bad, needle):
    result = _cli("preview", "--data-dir", str(make_bad(tmp_path)), "--out", str(tmp_path / "grid.png"))
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("error: ") and needle in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "grid.png").exists()
