"""The parity suite: families of checks, generic over a (torch model, Flax model, key map) pair.

    pair = project_twins(cfg)                       # or a pair from parity.port
    checks = layer_checks(pair.torch_model, pair.flax_model, pair.key_map, x_nchw)
    report = run_suite(pair, SuiteInputs(batches, TrainConfig()))
    print(format_table(report))

`python -m parity` runs every family on the project's twins (`parity.suite.cli`).
"""

from parity.suite.accuracy import accuracy_checks
from parity.suite.batchnorm import batchnorm_checks
from parity.suite.forward import dropout_check, forward_checks
from parity.suite.gradient import gradient_checks
from parity.suite.layers import layer_checks, layer_errors
from parity.suite.pair import TwinPair, project_twins
from parity.suite.report import format_table, plot_curves, write_json
from parity.suite.results import FAMILIES, Check, Report, rel_err
from parity.suite.runner import SuiteInputs, SuiteOptions, run_suite
from parity.suite.schedule import ScheduleCase, default_cases, schedule_checks
from parity.suite.trajectory import run_trajectory, trajectory_checks
from parity.suite.twins import KeyMappingLike, ModulePair, ParityError, module_pairs, sync_weights

__all__ = [
    "FAMILIES", "Check", "KeyMappingLike", "ModulePair", "ParityError", "Report", "ScheduleCase", "SuiteInputs",
    "SuiteOptions", "TwinPair", "accuracy_checks", "batchnorm_checks", "default_cases", "dropout_check",
    "format_table", "forward_checks", "gradient_checks", "layer_checks", "layer_errors", "module_pairs",
    "plot_curves", "project_twins", "rel_err", "run_suite", "run_trajectory", "schedule_checks", "sync_weights",
    "trajectory_checks", "write_json",
]
