"""--tta-flip: both twins score the softmax averaged over each image and its mirror image, in a
column of its own."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from flax_cnn.data.pipeline import EvalLoader
from flax_cnn.data.stats import ChannelStats
from flax_cnn.training.report import read_metrics
from tests.train_fixtures import quiet, small_cfg


@pytest.fixture(scope="module")
def case(tiny_model_json, tmp_path_factory):
    """Torch-initialised weights, 40 images, and labels that single-view and flip-TTA score differently."""
    from torch_ref.engine import TorchEngine

    tmp = tmp_path_factory.mktemp("tta")
    cfg = small_cfg(None, tiny_model_json, tmp / "torch", devices=1, eval_batch_size=16, ema_decay=0.0)  # export the sharpened weights
    eng = TorchEngine(cfg, steps_per_epoch=1, out=tmp / "torch")
    with torch.no_grad():  # fresh weights give all images nearly the same logits: sharpen the head
        eng.model.fc.weight.mul_(1000.0)
        eng.model.fc.bias.zero_()
    weights = tmp / "w.safetensors"
    eng.export_weights(weights)
    images = np.random.default_rng(0).integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    stats = ChannelStats(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    x = torch.from_numpy(((images / 255.0 - 0.5) / 0.25).astype(np.float32).transpose(0, 3, 1, 2))
    eng.model.eval()
    with torch.no_grad():
        p1 = eng.model(x).double().softmax(1)
        p2 = eng.model(torch.flip(x, dims=(3,))).double().softmax(1)
    single, tta = p1.argmax(1).numpy(), (p1 + p2).argmax(1).numpy()
    # even images: the TTA prediction; odd ones: the single-view prediction where the two differ
    labels = np.where(np.arange(40) % 2 == 0, tta, np.where(single != tta, single, (tta + 1) % 10)).astype(np.int32)
    return cfg, weights, EvalLoader(images, labels, batch_size=16, stats=stats), single, tta, labels


def test_both_twins_score_the_flip_average(case):
    from flax_cnn.training.engine import JaxEngine
    from torch_ref.engine import TorchEngine

    cfg, weights, loader, single, tta, labels = case
    want = float(np.mean(tta == labels))
    assert want == 0.5 and np.mean(single == labels) != want, np.bincount(single)  # the flip changes predictions
    for engine_cls in (TorchEngine, JaxEngine):
        eng = engine_cls(cfg.replace(init_from=str(weights)), steps_per_epoch=1, out=loader_dir(cfg, engine_cls))
        assert eng.evaluate_tta(loader) == want, engine_cls.__name__
        assert eng.evaluate(loader)[1] == float(np.mean(single == labels)), engine_cls.__name__


def loader_dir(cfg, engine_cls):
    from pathlib import Path

    return Path(cfg.out).parent / engine_cls.__name__


def test_run_reports_a_tta_column(train_data_dir, tiny_model_json, tmp_path):
    from flax_cnn.training.trainer import train_and_evaluate

    cfg = small_cfg(train_data_dir, tiny_model_json, tmp_path / "run", epochs=1, tta_flip=True)
    summary = train_and_evaluate(cfg, log=quiet)
    (row,) = read_metrics(tmp_path / "run" / "metrics.jsonl")
    assert 0 <= row["test_accuracy_tta"] <= 1 and summary["final_test_accuracy_tta"] == row["test_accuracy_tta"]
    assert summary["final_test_accuracy"] == row["test_accuracy"]
