"""`python -m parity.compare`: the two twins' runs side by side, on the session's small runs."""

from __future__ import annotations

import json

import pytest

from parity.compare import main


def test_compare_the_jax_and_torch_runs(uninterrupted, torch_run, tmp_path, capsys):
    (_, jax_dir, jax_summary), (_, torch_dir, torch_summary) = uninterrupted, torch_run
    out, png = tmp_path / "cmp.json", tmp_path / "cmp.png"
    assert main([str(jax_dir), str(torch_dir), "--json", str(out), "--plot", str(png)]) == 0
    text = capsys.readouterr().out
    assert "computing flags: identical" in text  # the fixtures differ only in --tensorboard
    c = json.loads(out.read_text())
    assert c["epochs_compared"] == 2 and c["both_finished"] is True
    assert c["final_gap_pp"] == pytest.approx(
        100 * (jax_summary["final_test_accuracy"] - torch_summary["final_test_accuracy"]))
    assert c["best"] == {"jax": jax_summary["best_test_accuracy"], "torch": torch_summary["best_test_accuracy"]}
    assert c["init_max_abs_difference"] > 0  # each twin drew its own initial weights (no --init-from)
    assert png.stat().st_size > 10_000


def test_compare_refuses_a_directory_without_epochs(uninterrupted, tmp_path, capsys):
    _, jax_dir, _ = uninterrupted
    assert main([str(jax_dir), str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
