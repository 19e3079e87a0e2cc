"""A ported ResNet trains like the torch original (the JAX trainer's own step vs torch's optimizer), and checkpoints."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

from flax_cnn import optim, schedules
from flax_cnn.checkpoint import Checkpoints
from flax_cnn.step import Model, init_state, make_train_step
from flax_cnn.train_config import TrainConfig
from parity.port import port
from tests.conftest import randomize_torch_
from tests.test_port_zoo import ResNet18, state_to_torch
from torch_ref.optim import make_optimizer, make_scheduler

STEPS = 3
# Three Adam steps from float32 gradients that agree to ~1e-6: Adam's update is ~lr·sign(g) where
# g is tiny, so parameters may differ by a few 1e-6 relative; 1e-4 is the end-weight bound.
PARAM_TOL = 1e-4


def test_trainer_steps_on_a_ported_resnet_match_torch(tmp_path):
    cfg = TrainConfig(epochs=1, max_lr=0.01, label_smoothing=0.1, weight_decay=1e-4, schedule="onecycle")
    torch.manual_seed(0)
    tm = randomize_torch_(ResNet18(width=4), seed=1)
    g = torch.Generator().manual_seed(2)
    batches = [(torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)) for _ in range(STEPS)]
    res = port(tm, batches[0][0][:1])

    model = Model.split(res.module)
    lr, beta1 = schedules.tables(cfg, STEPS)
    tx = optim.adam(lr, beta1, beta1=cfg.beta1, beta2=cfg.beta2, weight_decay=cfg.weight_decay)
    state = init_state(model, tx)
    step = make_train_step(model, tx, label_smoothing=cfg.label_smoothing)
    key = jax.random.key_data(jax.random.key(0))
    for x, y in batches:
        state = step(state, jnp.asarray(x.numpy().transpose(0, 2, 3, 1).copy()), jnp.asarray(y.numpy()), key)

    before = {k: v.clone() for k, v in tm.state_dict().items()}
    tm.train()
    opt = make_optimizer(tm.parameters(), cfg)
    sched = make_scheduler(opt, cfg, STEPS)
    for x, y in batches:
        opt.zero_grad()
        F.cross_entropy(tm(x), y, label_smoothing=cfg.label_smoothing).backward()
        opt.step()
        sched.step()

    got = {**state_to_torch(state.params, res.key_map), **state_to_torch(state.batch_stats, res.key_map)}
    sd = tm.state_dict()
    assert set(got) == set(sd)
    moved = 0.0
    for k, v in sd.items():
        ref = v.numpy()
        if k.endswith("num_batches_tracked"):
            assert int(got[k]) == int(ref) == 7 + STEPS, k
            continue
        err = np.abs(got[k] - ref).max() / np.abs(ref).max()
        assert err <= PARAM_TOL, f"{k}: {err:.2e}"
        moved = max(moved, float(np.abs(ref - before[k].numpy()).max()))
    assert moved > 1e-3, "the parameters barely moved: the comparison would prove nothing"

    # The trainer's orbax checkpoints take the ported state as they take the twin's (torch-named
    # paths such as layer1/0/conv1/kernel included) and give it back bit for bit.
    ckpt = Checkpoints(tmp_path, keep=1)
    ckpt.save(STEPS, state, {"epoch": 1})
    restored, meta = ckpt.restore_latest(state)
    ckpt.close()
    assert meta == {"epoch": 1}
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(restored)))
