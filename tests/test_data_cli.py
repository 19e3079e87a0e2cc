"""`python -m flax_cnn.data`: the preview grid, the stats, and the throughput numbers (not asserted)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from flax_cnn.data import ChannelStats
from flax_cnn.data.__main__ import main
from flax_cnn.data.throughput import measure
from tests.data_fixtures import binary_files, tiny_cifar, write_dir


def test_preview_writes_a_png_grid(tmp_path, capsys):
    data_dir = write_dir(tmp_path / "cifar", binary_files(tiny_cifar()))
    out = tmp_path / "previews" / "grid.png"
    assert main(["preview", "--data-dir", str(data_dir), "--out", str(out), "--examples", "4", "--copies", "2"]) == 0
    assert capsys.readouterr().out == f"wrote {out}\n"
    with Image.open(out) as png:
        assert png.format == "PNG"
        width, height = png.size
    # 5 columns (original + 2 per path) × 4 rows at 1.25 × 1.3 inches, 110 dpi (matplotlib truncates)
    assert (width, height) == (int(5 * 1.25 * 110), int(4 * 1.3 * 110))


def test_stats_prints_counts_and_channel_stats(tmp_path, capsys):
    data_dir = write_dir(tmp_path, binary_files(tiny_cifar()))
    assert main(["stats", "--data-dir", str(data_dir)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["train"], report["test"]) == (20, 4) and sum(report["train_per_class"]) == 20
    assert all(abs(m - 0.5) < 0.02 for m in report["mean"])  # uniform random bytes: 127.5/255 ± 0.3/√20480


def test_throughput_measures_every_path():
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (64, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, 64)
    stats = ChannelStats((0.5,) * 3, (0.25,) * 3)
    for augment in ("albumentations", "none", "device"):
        rate = measure(images, labels, stats, augment=augment, batch_size=16, batches=3)
        assert np.isfinite(rate) and rate > 0, augment
