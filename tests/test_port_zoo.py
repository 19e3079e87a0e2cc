"""parity.port on public-CIFAR-style CNNs: eval logits, train-mode forward and every gradient match torch.

The models are written the way kuangliu/pytorch-cifar writes them (functional relus, `out +=`,
`out.view(out.size(0), -1)`, `torch.cat`), at reduced width so the suite stays fast; the structure
(blocks, shortcuts, pooling, heads) is the real one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from flax import nnx

from flax_cnn.step import Model, cross_entropy
from parity.port import port
from parity.suite.gradient import gradient_errors
from tests.conftest import randomize_torch_

# float32 logits through up to ~20 conv+BN layers: XLA and ATen sum in different orders, ~1e-7
# relative per layer; 1e-5 absolute on O(1) logits is the project's forward tolerance.
LOGIT_TOL = 1e-5
# Gradients carry the forward residue once more through the backward pass.
GRAD_TOL = 1e-5


# --- the models ---------------------------------------------------------------------------------

class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != self.expansion * planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, self.expansion * planes, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(self.expansion * planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


class ResNet(nn.Module):
    def __init__(self, block, num_blocks, num_classes=10, width=64):
        super().__init__()
        self.in_planes = width
        self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make_layer(block, width, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(block, 2 * width, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(block, 4 * width, num_blocks[2], stride=2)
        self.layer4 = self._make_layer(block, 8 * width, num_blocks[3], stride=2)
        self.linear = nn.Linear(8 * width * block.expansion, num_classes)

    def _make_layer(self, block, planes, num_blocks, stride):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for stride in strides:
            layers.append(block(self.in_planes, planes, stride))
            self.in_planes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = self.layer4(out)
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


def ResNet18(width: int = 8):
    return ResNet(BasicBlock, [2, 2, 2, 2], width=width)


class VGG(nn.Module):
    """VGG-style: conv-BN-ReLU stacks, max-pooling, and a flatten + Linear head on a 4×4 map."""

    def __init__(self, cfg=(8, "M", 16, "M", 32, 32, "M"), num_classes=10):
        super().__init__()
        self.features = self._make_layers(cfg)
        self.classifier = nn.Sequential(nn.Linear(cfg[-2] * 4 * 4, 32), nn.ReLU(True), nn.Dropout(0.5),
                                        nn.Linear(32, num_classes))

    def forward(self, x):
        out = self.features(x)
        out = torch.flatten(out, 1)
        out = self.classifier(out)
        return out

    def _make_layers(self, cfg):
        layers = []
        in_channels = 3
        for x in cfg:
            if x == "M":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                layers += [nn.Conv2d(in_channels, x, kernel_size=3, padding=1), nn.BatchNorm2d(x),
                           nn.ReLU(inplace=True)]
                in_channels = x
        return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """expand + depthwise + pointwise (MobileNetV2), residual when stride is 1."""

    def __init__(self, in_planes, out_planes, expansion, stride):
        super().__init__()
        self.stride = stride
        planes = expansion * in_planes
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=1, stride=1, padding=0, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=stride, padding=1, groups=planes, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_planes, kernel_size=1, stride=1, padding=0, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.shortcut = nn.Sequential()
        if stride == 1 and in_planes != out_planes:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(out_planes))

    def forward(self, x):
        out = F.relu6(self.bn1(self.conv1(x)))
        out = F.relu6(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + self.shortcut(x) if self.stride == 1 else out
        return out


class MobileNetV2(nn.Module):
    """Two inverted residuals: 8→8 with the identity residual, then 6× expansion with stride 2."""

    # (expansion, out_planes, num_blocks, stride)
    cfg = [(1, 8, 1, 1), (6, 12, 1, 2)]

    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layers = self._make_layers(in_planes=8)
        self.conv2 = nn.Conv2d(12, 64, kernel_size=1, stride=1, padding=0, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU6(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(0.2)
        self.linear = nn.Linear(64, num_classes)

    def _make_layers(self, in_planes):
        layers = []
        for expansion, out_planes, num_blocks, stride in self.cfg:
            strides = [stride] + [1] * (num_blocks - 1)
            for stride in strides:
                layers.append(InvertedResidual(in_planes, out_planes, expansion, stride))
                in_planes = out_planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.flatten(self.pool(out))
        return self.linear(self.dropout(out))


class Bottleneck(nn.Module):
    def __init__(self, in_planes, growth_rate):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, 4 * growth_rate, kernel_size=1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth_rate)
        self.conv2 = nn.Conv2d(4 * growth_rate, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, x):
        out = self.conv1(F.relu(self.bn1(x)))
        out = self.conv2(F.relu(self.bn2(out)))
        out = torch.cat([out, x], 1)
        return out


class Transition(nn.Module):
    def __init__(self, in_planes, out_planes):
        super().__init__()
        self.bn = nn.BatchNorm2d(in_planes)
        self.conv = nn.Conv2d(in_planes, out_planes, kernel_size=1, bias=False)

    def forward(self, x):
        out = self.conv(F.relu(self.bn(x)))
        out = F.avg_pool2d(out, 2)
        return out


class DenseNet(nn.Module):
    """A dense block (concatenation) and a transition, then BN-ReLU, avg_pool2d(4) and view + Linear
    on the 4×4 map: the flatten-then-Linear trap once more, through `view` and functional pooling."""

    def __init__(self, nblock=3, growth_rate=4, reduction=0.5, num_classes=10):
        super().__init__()
        num_planes = 2 * growth_rate
        self.conv1 = nn.Conv2d(3, num_planes, kernel_size=3, padding=1, bias=False)
        self.dense1 = self._make_dense_layers(num_planes, growth_rate, nblock)
        num_planes += nblock * growth_rate
        out_planes = int(num_planes * reduction)
        self.trans1 = Transition(num_planes, out_planes)
        self.bn = nn.BatchNorm2d(out_planes)
        self.linear = nn.Linear(out_planes * 4 * 4, num_classes)

    def _make_dense_layers(self, in_planes, growth_rate, nblock):
        layers = []
        for _ in range(nblock):
            layers.append(Bottleneck(in_planes, growth_rate))
            in_planes += growth_rate
        return nn.Sequential(*layers)

    def forward(self, x):
        out = self.conv1(x)
        out = self.trans1(self.dense1(out))
        out = F.avg_pool2d(F.relu(self.bn(out)), 4)
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


def twin():
    """Our own torch twin, in the small 4-layer configuration (stride-2, separable, dilated convs)."""
    import torch_ref
    from tests.conftest import TINY
    return torch_ref.build_model(TINY, seed=1)


ZOO = {"resnet18": lambda: ResNet18(width=8), "vgg": VGG, "mobilenetv2": MobileNetV2, "densenet": DenseNet,
       "twin": twin}
NAMES = list(ZOO)


def build(name: str, seed: int = 0) -> nn.Module:
    """A zoo model with seeded init and random BN statistics and affine parameters (not 0/1)."""
    torch.manual_seed(seed)
    return randomize_torch_(ZOO[name](), seed=seed + 1)


# --- helpers ----------------------------------------------------------------------------------

def nhwc(x: torch.Tensor) -> jax.Array:
    return jnp.asarray(x.numpy().transpose(0, 2, 3, 1).copy())


def compile_once(fn, *args):
    """One XLA compile for everything a model's tests compare.

    Not with `xla_backend_optimization_level=0`, though it compiles 3x faster: unvectorised
    reductions sum sequentially and push BatchNorm gradients to ~2e-5 off torch's.
    """
    return jax.jit(fn).lower(*args).compile()


def dropout_off(tm: nn.Module, fm: nnx.Module) -> None:
    """Dropout rate 0 on both sides (train-mode comparisons cannot share torch's RNG)."""
    for m in tm.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    for _, m in nnx.iter_modules(fm):
        if hasattr(m, "rate"):
            m.rate = 0.0


def state_to_torch(state: nnx.State, key_map) -> dict[str, np.ndarray]:
    """Entries of an nnx.State (params, grads, batch stats) in torch naming and layout."""
    flat = {tuple(p): v.get_value() for p, v in nnx.to_flat_state(state)}
    return {m.torch_key: m.to_torch(np.asarray(flat[m.flax_path])) for m in key_map if m.flax_path in flat}


@dataclass
class Compared:
    """Both sides' eval logits, train-mode logits, BN statistics after that step, and gradients."""

    torch_eval: np.ndarray
    flax_eval: np.ndarray
    torch_train: np.ndarray
    flax_train: np.ndarray
    torch_state: dict[str, np.ndarray]
    flax_state: dict[str, np.ndarray]
    torch_grads: dict[str, np.ndarray]
    flax_grads: dict[str, np.ndarray]
    torch_params: int
    report_params: tuple[int, int]


def compare(name: str, x: torch.Tensor, y: torch.Tensor) -> Compared:
    """Port the zoo model and run everything once per side (one XLA compile for the Flax side)."""
    tm = build(name)
    res = port(tm, x[:1])
    tm, fm = copy.deepcopy(tm), nnx.clone(res.module)
    dropout_off(tm, fm)
    tm.eval()
    with torch.no_grad():
        t_eval = tm(x).numpy()
    tm.train()
    t_train = tm(x)
    F.cross_entropy(t_train, y).backward()
    model = Model.split(fm)

    def everything(params, stats, x, y):
        logits = model.merge(params, stats, train=False)(x)

        def loss(p):
            m = model.merge(p, stats, train=True)
            out = m(x)
            return cross_entropy(out, y).mean(), (out, nnx.state(m, nnx.BatchStat))
        (_, (train_logits, new_stats)), grads = jax.value_and_grad(loss, has_aux=True)(params)
        return logits, train_logits, new_stats, grads

    args = (model.params, model.batch_stats, nhwc(x), jnp.asarray(y.numpy()))
    f_eval, f_train, f_stats, f_grads = compile_once(everything, *args)(*args)
    return Compared(t_eval, np.asarray(f_eval), t_train.detach().numpy(), np.asarray(f_train),
                    {k: v.numpy() for k, v in tm.state_dict().items()}, state_to_torch(f_stats, res.key_map),
                    {k: p.grad.numpy() for k, p in tm.named_parameters()}, state_to_torch(f_grads, res.key_map),
                    sum(p.numel() for p in tm.parameters()), (res.report.torch_params, res.report.flax_params))


# --- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(4, 3, 32, 32, generator=g), torch.randint(0, 10, (4,), generator=g)


@pytest.fixture(scope="session")
def compared(batch):
    """name -> Compared, each computed once per session."""
    cache: dict[str, Compared] = {}

    def get(name: str) -> Compared:
        if name not in cache:
            cache[name] = compare(name, *batch)
        return cache[name]
    return get


# --- tests ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_eval_logits_match_torch(name, compared):
    c = compared(name)
    assert np.abs(c.torch_eval).max() > 0.1, "logits too small to make the comparison meaningful"
    assert np.abs(c.flax_eval - c.torch_eval).max() <= LOGIT_TOL
    assert c.report_params == (c.torch_params, c.torch_params)


@pytest.mark.parametrize("name", NAMES)
def test_train_mode_forward_and_batchnorm_statistics_match(name, compared):
    c = compared(name)
    assert np.abs(c.flax_train - c.torch_train).max() <= LOGIT_TOL
    # One torch-convention EMA update of statistics from ~1e-7-relative activations: 1e-6.
    stats = [k for k in c.torch_state if "running" in k]
    assert stats
    for k in stats:
        np.testing.assert_allclose(c.flax_state[k], c.torch_state[k], rtol=1e-6, atol=1e-6, err_msg=k)
    for k in c.torch_state:
        if k.endswith("num_batches_tracked"):
            assert int(c.flax_state[k]) == int(c.torch_state[k]) == 8, k


@pytest.mark.parametrize("name", NAMES)
def test_gradients_match_for_every_parameter(name, compared):
    c = compared(name)
    assert set(c.flax_grads) == set(c.torch_grads)
    errors = gradient_errors(c.torch_grads, c.flax_grads)  # analytic zeros vs the model's scale
    worst = max(errors, key=errors.get)
    assert errors[worst] <= GRAD_TOL, f"{worst}: {errors[worst]:.2e}"
