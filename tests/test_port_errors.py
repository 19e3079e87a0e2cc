"""What the port refuses: one PortError naming the torch module path and the op; the torch model untouched."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from parity.port import PortError, port


class Stem(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class WithLSTM(nn.Module):
    """A conv stem feeding an LSTM over image rows."""

    def __init__(self):
        super().__init__()
        self.stem = Stem()
        self.head = nn.Sequential()
        self.head.add_module("rnn", nn.LSTM(4 * 8, 5, batch_first=True))

    def forward(self, x):
        out = self.stem(x)
        out = out.permute(0, 2, 1, 3).flatten(2)
        return self.head(out)[0]


class Upsample(nn.Module):
    def forward(self, x):
        return F.interpolate(x, scale_factor=2.0, mode="bicubic")


class WithInterpolate(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Stem()
        self.up = Upsample()

    def forward(self, x):
        return self.up(self.stem(x))


class Gate(nn.Module):
    def forward(self, x):
        if x.mean() > 0:  # data-dependent: torch.fx cannot trace it
            return x
        return -x


class WithControlFlow(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Stem()
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.stem(x))


class WithRawTensor(nn.Module):
    """A plain tensor attribute (neither a parameter nor a registered buffer): it would not travel
    with the weights, so the port refuses it."""

    def __init__(self):
        super().__init__()
        self.stem = Stem()
        self.scale = torch.ones(1, 4, 1, 1)

    def forward(self, x):
        return self.stem(x) * self.scale


class WithParameterMutation(nn.Module):
    """forward changes a parameter in place: state the port cannot reproduce as a pure function."""

    def __init__(self):
        super().__init__()
        self.stem = Stem()
        self.scale = nn.Parameter(torch.ones(1, 4, 1, 1))

    def forward(self, x):
        self.scale.mul_(0.5)
        return self.stem(x) * self.scale


class TrainOnlyScale(nn.Module):
    def forward(self, x):
        return x * 0.5 if self.training else x


class WithTrainBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Stem()
        self.scale = TrainOnlyScale()

    def forward(self, x):
        return self.scale(self.stem(x))


class WithAlwaysOnDropout(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = Stem()

    def forward(self, x):
        return F.dropout(self.stem(x), 0.2)  # torch's default training=True: drops in eval mode too


X = torch.randn(1, 3, 8, 8)


@pytest.mark.parametrize("model,message", [
    (WithLSTM, r"^head\.rnn \(LSTM\): unsupported module torch\.nn\.modules\.rnn\.LSTM"),
    (WithInterpolate, r"^up \(Upsample\): F\.interpolate\(mode='bicubic'\) is not ported"),
    (WithControlFlow, r"^gate \(Gate\): data-dependent control flow at test_port_errors\.py:\d+: "
                      r"`if x\.mean\(\) > 0:.*`: Python takes a bool"),
    (WithRawTensor, r"^<root> \(WithRawTensor\): reads the tensor attribute `scale`, neither a "
                    r"parameter nor a registered buffer"),
    (WithParameterMutation, r"^<root> \(WithParameterMutation\): Tensor\.mul_ changes `scale` in place"),
    (WithAlwaysOnDropout, r"^<root> \(WithAlwaysOnDropout\): F\.dropout\(training=True\) drops in eval mode too"),
], ids=["lstm", "bicubic", "control-flow", "raw-tensor", "parameter-mutation", "always-on-dropout"])
def test_unsupported_fails_with_one_message_naming_path_and_op(model, message):
    torch.manual_seed(0)
    tm = model()
    before = {k: v.clone() for k, v in tm.state_dict().items()}
    with pytest.raises(PortError, match=message) as info:
        port(tm, X)
    assert "\n" not in str(info.value)
    # Tracing runs in train mode and shape propagation in eval mode: both are undone, and the
    # BatchNorm statistics were never updated.
    assert tm.training and all(m.training for m in tm.modules())
    assert all(torch.equal(v, tm.state_dict()[k]) for k, v in before.items())


def test_bad_example_input_names_the_failing_module():
    with pytest.raises(PortError, match=re.escape("stem.conv (Conv2d): the example input (1, 5, 8, 8) does not run")):
        port(WithInterpolate(), torch.randn(1, 5, 8, 8))


def test_a_single_layer_or_a_non_4d_input_is_refused():
    with pytest.raises(PortError, match=r"wrap the layer: nn\.Sequential\(layer\)"):
        port(nn.Conv2d(3, 4, 3), X)
    with pytest.raises(PortError, match=r"4-D"):
        port(Stem(), torch.randn(3, 8, 8))


def test_momentum_none_batchnorm_is_refused():
    m = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, momentum=None))
    with pytest.raises(PortError, match=r"^1 \(BatchNorm2d\): BatchNorm2d\(momentum=None\)"):
        port(m, X)
