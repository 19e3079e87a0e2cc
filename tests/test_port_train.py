"""A ported ResNet trains like the torch original (the JAX trainer's own step vs torch's optimizer), and checkpoints."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch

from flax_cnn.training import optim, schedules
from flax_cnn.checkpoints.orbax_io import Checkpoints
from flax_cnn.training.step import Model, init_state, make_train_step
from flax_cnn.training.config import TrainConfig
from parity.port import port
from tests.conftest import randomize_torch_
from parity.suite.trajectory import trajectory_checks
from tests.zoo.resnet import resnet18

STEPS = 5  # the fewest one-cycle allows at pct_start 0.25 (torch divides by pct_start * steps - 1)


def test_trainer_steps_on_a_ported_resnet_match_torch(tmp_path):
    """The parity suite's trajectory family on the ported pair: the JAX trainer's step and optimizer
    against torch's, same batches; float64, where the two trainers can only differ by rounding."""
    cfg = TrainConfig(epochs=1, max_lr=0.01, label_smoothing=0.1, weight_decay=1e-4, schedule="onecycle")
    torch.manual_seed(0)
    tm = randomize_torch_(resnet18(width=4), seed=1)
    g = torch.Generator().manual_seed(2)
    batches = [(torch.randn(4, 3, 32, 32, generator=g).numpy(), torch.randint(0, 10, (4,), generator=g).numpy())
               for _ in range(STEPS)]
    res = port(tm, torch.from_numpy(batches[0][0][:1]))

    checks, traj = trajectory_checks(tm, res.module, res.key_map, batches, cfg, dtype="float64")
    assert [c.passed for c in checks] == [True] * 3, [(c.name, c.error, c.where) for c in checks]
    assert max(c.error for c in checks) < 1e-10  # float64: rounding only
    moved = max(float(np.abs(traj.params_torch[k] - v.detach().numpy()).max()) for k, v in tm.named_parameters())
    assert moved > 1e-3, "the parameters barely moved: the comparison would prove nothing"

    # The trainer's orbax checkpoints take the ported state as they take the twin's (torch-named
    # paths such as layer1/0/conv1/kernel included) and give it back bit for bit.
    model = Model.split(res.module)
    tx = optim.adam(schedules.tables(cfg, STEPS)[0])
    state = init_state(model, tx)
    state = make_train_step(model, tx)(state, jnp.asarray(batches[0][0].transpose(0, 2, 3, 1).copy()),
                                       jnp.asarray(batches[0][1], jnp.int32), jax.random.key_data(jax.random.key(0)))
    # The trainer's orbax checkpoints take the ported state as they take the twin's (torch-named
    # paths such as layer1/0/conv1/kernel included) and give it back bit for bit.
    ckpt = Checkpoints(tmp_path, keep=1)
    ckpt.save(1, state, {"epoch": 1})
    restored, meta = ckpt.restore_latest(state)
    ckpt.close()
    assert meta == {"epoch": 1}
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)))
