"""Every CIFAR-10 source loads back exactly what was written; the real files have the known numbers."""

from __future__ import annotations

import functools
import hashlib
import http.server
import sys
import threading

import numpy as np
import pytest

from flax_cnn.data import CLASS_NAMES, DataError, load_cifar10
from flax_cnn.data.cifar10 import balanced_prefix
from flax_cnn.data.stats import channel_stats
from tests.data_fixtures import NAMES, binary_files, expected, python_files, tiny_cifar, write_archive, write_dir

DATA = tiny_cifar()


def _assert_loads(source, split="train", **kw):
    data = load_cifar10(source, split, **kw)
    images, labels = expected(DATA, split)
    np.testing.assert_array_equal(data.images, images)
    np.testing.assert_array_equal(data.labels, labels)
    assert data.images.dtype == np.uint8 and data.labels.dtype == np.int32
    assert data.class_names == NAMES and data.split == split
    return data


@pytest.mark.parametrize("split", ["train", "test"])
def test_binary_dir(tmp_path, split):
    _assert_loads(write_dir(tmp_path, binary_files(DATA)), split)


def test_binary_record_layout_is_label_then_row_major_rgb_planes(tmp_path):
    record = bytearray(3073)
    record[0] = 7
    record[1 + 1 * 32 + 2] = 200            # R plane, row 1, column 2
    record[1 + 1024 + 5 * 32 + 0] = 100     # G plane, row 5, column 0
    record[1 + 2048 + 31 * 32 + 31] = 50    # B plane, last pixel
    files = binary_files(DATA)
    files["test_batch.bin"] = bytes(record)
    data = load_cifar10(write_dir(tmp_path, files), "test")
    assert data.labels.tolist() == [7]
    expect = np.zeros((32, 32, 3), np.uint8)
    expect[1, 2, 0], expect[5, 0, 1], expect[31, 31, 2] = 200, 100, 50
    np.testing.assert_array_equal(data.images[0], expect)


@pytest.mark.parametrize("protocol", [2, 5])  # 2: as the official (Python 2) files; 5: a Python 3 re-pickle
@pytest.mark.parametrize("split", ["train", "test"])
def test_python_dir(tmp_path, split, protocol):
    _assert_loads(write_dir(tmp_path, python_files(DATA, protocol)), split)


@pytest.mark.parametrize("top, files", [("cifar-10-batches-bin", binary_files(DATA)),
                                        ("cifar-10-batches-py", python_files(DATA))])
def test_archives_are_read_without_extracting(tmp_path, top, files):
    archive = write_archive(tmp_path / "cifar.tar.gz", top, files)
    for split in ("train", "test"):
        _assert_loads(archive, split)
    assert [p.name for p in tmp_path.iterdir()] == ["cifar.tar.gz"]


def test_dir_holding_an_extracted_or_archived_copy(tmp_path):
    write_dir(tmp_path / "a" / "cifar-10-batches-bin", binary_files(DATA))
    _assert_loads(tmp_path / "a")
    (tmp_path / "b").mkdir()
    write_archive(tmp_path / "b" / "cifar-10-python.tar.gz", "cifar-10-batches-py", python_files(DATA))
    _assert_loads(tmp_path / "b", "test")


def test_subset_is_class_balanced_nested_and_in_file_order():
    labels = np.random.default_rng(0).integers(0, 10, 500)
    keep = balanced_prefix(labels, 95)
    counts = np.bincount(labels[keep], minlength=10)
    assert counts.max() - counts.min() <= 1 and counts.sum() == 95
    assert np.all(np.diff(keep) > 0)
    assert set(keep) <= set(balanced_prefix(labels, 96))
    np.testing.assert_array_equal(keep, balanced_prefix(labels, 95))
    # class 0 has only 2 examples: the others fill up the subset
    short = np.array([0, 1, 0] + [1, 2] * 10)
    assert np.bincount(short[balanced_prefix(short, 10)], minlength=3).tolist() == [2, 4, 4]


def test_limit_keeps_the_first_balanced_examples(tmp_path):
    data = load_cifar10(write_dir(tmp_path, binary_files(DATA)), "train", limit=7)
    images, labels = expected(DATA, "train")
    keep = balanced_prefix(labels, 7)
    np.testing.assert_array_equal(data.images, images[keep])
    assert len(data) == 7


# --- download -----------------------------------------------------------------------------------


class _Server:
    """http.server on 127.0.0.1 serving one directory, counting the requests it answers."""

    def __init__(self, root):
        self.requests = 0
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def do_GET(self):
                server.requests += 1
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=root))
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/{name}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture()
def served_archive(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    archive = write_archive(served / "cifar-10-binary.tar.gz", "cifar-10-batches-bin", binary_files(DATA))
    with _Server(served) as server:
        yield server, hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_once_verify_and_reuse(tmp_path, served_archive):
    server, md5 = served_archive
    cache = tmp_path / "cache"
    kw = dict(cache_dir=cache, url=server.url("cifar-10-binary.tar.gz"), md5=md5)
    _assert_loads(None, "train", **kw)
    _assert_loads(None, "test", **kw)
    assert server.requests == 1
    assert [p.name for p in cache.iterdir()] == ["cifar-10-binary.tar.gz"]


def test_download_default_cache_dir_from_env(tmp_path, served_archive, monkeypatch):
    server, md5 = served_archive
    monkeypatch.setenv("FLAX_CNN_CACHE", str(tmp_path / "env-cache"))
    _assert_loads(None, "test", url=server.url("cifar-10-binary.tar.gz"), md5=md5)
    assert (tmp_path / "env-cache" / "cifar-10-binary.tar.gz").is_file()


def test_download_with_wrong_checksum_caches_nothing(tmp_path, served_archive):
    server, _ = served_archive
    cache = tmp_path / "cache"
    with pytest.raises(DataError, match="MD5 .* expected 0{32}"):
        load_cifar10(None, cache_dir=cache, url=server.url("cifar-10-binary.tar.gz"), md5="0" * 32)
    assert list(cache.iterdir()) == []


def test_download_failure_is_a_data_error(tmp_path, served_archive):
    server, md5 = served_archive
    with pytest.raises(DataError, match=r"download failed .*--data-dir"):
        load_cifar10(None, cache_dir=tmp_path / "cache", url=server.url("missing.tar.gz"), md5=md5)


# --- tfds ---------------------------------------------------------------------------------------


def test_tfds_data_source_with_mock_data(tmp_path):
    # tfds.testing.mock_data needs no TensorFlow for `tfds.data_source`: it mocks the ArrayRecord
    # reader and generates examples from the cifar10 builder's feature spec.
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=12):
        data = load_cifar10(f"tfds:{tmp_path}", "test")
    assert data.images.shape == (12, 32, 32, 3) and data.images.dtype == np.uint8
    assert data.labels.dtype == np.int32 and 0 <= data.labels.min() and data.labels.max() <= 9
    assert data.class_names == CLASS_NAMES and data.source.startswith("tfds:cifar10/test")
    assert data.images.std() > 10  # random pixels, not an all-zero placeholder
    assert "tensorflow" not in sys.modules  # (and TensorFlow is not installed in the project's venv)


def test_tfds_not_prepared_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"tfds: cannot open cifar10 .*TensorFlow.*--data-dir") as e:
        load_cifar10(f"tfds:{tmp_path}", "test")
    assert "\n" not in str(e.value)


# --- the real files -----------------------------------------------------------------------------


@pytest.mark.realdata
def test_real_test_split(real_data_dir):
    data = load_cifar10(real_data_dir, "test")
    assert data.images.shape == (10_000, 32, 32, 3)
    assert data.counts().tolist() == [1_000] * 10
    assert data.class_names == CLASS_NAMES


@pytest.mark.realdata
def test_real_train_split_channel_stats(real_data_dir):
    data = load_cifar10(real_data_dir, "train")
    assert len(data) == 50_000 and data.counts().tolist() == [5_000] * 10
    stats = channel_stats(data.images)
    # The data dir's README: means match the usual 0.4914/0.4822/0.4465 (4 digits: ±5e-5, plus
    # what JPEG decoding shifts); per-pixel std about 1% below the original 0.2470/0.2435/0.2616.
    np.testing.assert_allclose(stats.mean, (0.4914, 0.4822, 0.4465), atol=5e-4)
    ratio = np.array(stats.std) / (0.2470, 0.2435, 0.2616)
    assert np.all((ratio > 0.98) & (ratio < 1.001)), ratio
