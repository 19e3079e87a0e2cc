"""Which porter-relevant idioms a zoo model uses: read from its source, its module tree and one forward.

Source patterns catch how the forward is written (`x.size(1)`, `out +=`, the shuffle spelling);
the module tree catches layer settings (groups, dilation, padding); a traced forward catches
what only runs (a `torch.cat` of four or more tensors built in a loop).
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

# Idiom name -> regular expression over the model file's source.
SOURCE: dict[str, str] = {
    "b,c,h,w=x.size()": r"\w+, \w+, \w+, \w+ = \w+\.(size\(\)|shape\b)",
    "x.size(i)": r"\.size\([1-3]\)",
    "x.shape[i]": r"\.shape\[\d\]",
    "int(x.size(1)*ratio)": r"int\(\w+\.size\(1\) \* self\.\w+\)",
    "c//g from size": r"\bc // \w+",
    "avg_pool2d(x, x.size/shape)": r"F\.avg_pool2d\((\w+), \1\.(size\(\d\)|shape\[\d\])\)",
    "avg_pool2d(x, 4)": r"F\.avg_pool2d\(.*, \d+\)",
    "F.adaptive_avg_pool2d(x, 1)": r"F\.adaptive_avg_pool2d\(.*, 1\)",
    "nn.AdaptiveAvgPool2d": r"nn\.AdaptiveAvgPool2d\(",
    "view(x.size(0), -1)": r"\.view\(\w+\.size\(0\), -1\)",
    "torch.flatten(x, 1)": r"torch\.flatten\(.*, 1\)",
    "nn.Flatten": r"nn\.Flatten\(",
    "chunk": r"\.chunk\(",
    "torch.split": r"torch\.split\(",
    "slice x[:, :c]": r"\[:, :?\w*:?\w*, :, :\]",
    "shuffle transpose/contiguous/view": r"\.transpose\(1, 2\)\.contiguous\(\)\.view\(",
    "shuffle permute/reshape": r"\.permute\(0, 2, 1, 3, 4\)\.reshape\(",
    "SE 1x1 convs": r"x \* torch\.sigmoid\(self\.\w+\(F\.\w+\(self\.\w+\(F\.adaptive_avg_pool2d\(x, 1\)\)\)\)\)",
    "SE linear + view(b,c,1,1)": r"\.view\(b, c, 1, 1\)",
    "if self.training: dropout": r"if self\.training:\s*\n\s*\w+ = F\.dropout\(",
    "drop-connect mask": r"torch\.rand\(\w+\.size\(0\), 1, 1, 1",
    "out += shortcut": r"\bout \+= (x\b|self\.)",
    "F.relu(inplace=True)": r"F\.relu\(.*inplace=True\)",
    "swish x*sigmoid(x)": r"(\w+) \* torch\.sigmoid\(\1\)",
    "F.silu": r"F\.silu\(",
}


def _convs(model: nn.Module) -> list[nn.Conv2d]:
    return [m for m in model.modules() if isinstance(m, nn.Conv2d)]


# Idiom name -> predicate over the built model.
MODULES: dict[str, Callable[[nn.Module], bool]] = {
    "nn.ReLU(inplace=True)": lambda m: any(isinstance(x, nn.ReLU) and x.inplace for x in m.modules()),
    "ReLU6": lambda m: any(isinstance(x, nn.ReLU6) for x in m.modules()),
    "nn.SiLU": lambda m: any(isinstance(x, nn.SiLU) for x in m.modules()),
    "nn.Sigmoid": lambda m: any(isinstance(x, nn.Sigmoid) for x in m.modules()),
    "Hardswish": lambda m: any(isinstance(x, nn.Hardswish) for x in m.modules()),
    "Hardsigmoid": lambda m: any(isinstance(x, nn.Hardsigmoid) for x in m.modules()),
    "nn.Dropout": lambda m: any(isinstance(x, nn.Dropout) for x in m.modules()),
    "grouped conv": lambda m: any(1 < c.groups < c.in_channels for c in _convs(m)),
    "depthwise conv": lambda m: any(c.groups == c.in_channels > 1 for c in _convs(m)),
    "dilated conv": lambda m: any(max(c.dilation) > 1 for c in _convs(m)),
    "non-square kernel": lambda m: any(c.kernel_size[0] != c.kernel_size[1] for c in _convs(m)),
    "1x1 stride-2 conv": lambda m: any(c.kernel_size == (1, 1) and c.stride == (2, 2) for c in _convs(m)),
    "conv bias=True": lambda m: any(c.bias is not None for c in _convs(m)),
    "max-pool padding": lambda m: any(isinstance(x, nn.MaxPool2d) and x.padding != 0 for x in m.modules()),
    "avg-pool padding": lambda m: any(isinstance(x, nn.AvgPool2d) and x.padding != 0 for x in m.modules()),
    "conv classifier, no nn.Linear": lambda m: not any(isinstance(x, nn.Linear) for x in m.modules()),
    "nn.ModuleList": lambda m: any(isinstance(x, nn.ModuleList) for x in m.modules()),
    "nested Sequential": lambda m: any(isinstance(x, nn.Sequential) and any(isinstance(y, nn.Sequential) for y in x)
                                       for x in m.modules()),
}


class _CatCounter(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.widest = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is torch.cat:
            self.widest = max(self.widest, len(args[0]))
        return func(*args, **(kwargs or {}))


def widest_cat(model: nn.Module) -> int:
    """The most tensors one `torch.cat` joins in an eval forward of one 32x32 image."""
    counter = _CatCounter()
    was_training = model.training
    model.eval()
    with torch.no_grad(), counter:
        model(torch.zeros(1, 3, 32, 32))
    model.train(was_training)
    return counter.widest


def idioms_of(factory: Callable[[], nn.Module], model: nn.Module) -> list[str]:
    """Every idiom of SOURCE, MODULES and the cat width that `model` (built by `factory`) uses."""
    source = inspect.getsource(sys.modules[factory.__module__])
    found = [name for name, pattern in SOURCE.items() if re.search(pattern, source)]
    found += [name for name, test in MODULES.items() if test(model)]
    if widest_cat(model) >= 4:
        found.append("torch.cat of >= 4")
    return found


ALL = [*SOURCE, *MODULES, "torch.cat of >= 4"]
