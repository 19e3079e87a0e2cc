"""`python -m parity.bench`: the full train step of the default model, JAX jit vs PyTorch.

Times forward + backward + Adam of the real trainers' code paths: the JAX trainer's jitted step
(sharded over all local devices, and on one device — `flax_cnn.train`'s default on CPU), torch eager,
and torch.compile, each in float32 and in bf16 (`--precision bf16`: JAX's bf16 compute dtype, torch's
bf16 autocast). Every row also gets its fraction of the matmul peak of its own framework and
precision (`parity.peaks`), timed in the same interleaved run, and the machine's ISA. Warm-up and compilation are excluded from the step times and reported on
their own; every timing ends with a device synchronisation; frameworks are interleaved
repetition by repetition, in a fresh random order each time, so that load from other processes
hits all of them alike. The first step of each repetition is timed apart (`settle_ms_median`): XLA:CPU
takes fresh memory every step, and while the other frameworks run, a VM's hypervisor may reclaim the
pages it freed (free page reporting), so JAX's first step back cost twice its steady time on this
project's VMs — a cost of interleaving that a training loop, stepping back to back, never pays. Medians and
quartiles per framework, images/s, and the input pipeline alone (albumentations via grain with
0…N workers, the on-device augmentation) complete the picture. Page faults and kernel CPU time
per step are counted for each framework: on CPU, fresh memory is a large part of a step's cost
(see `flax_cnn.runtime.hugepages`; the command re-executes itself with glibc's huge-page malloc, as the
trainers do, so both frameworks run under the same allocator settings).
"""

from __future__ import annotations

import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import tyro

from flax_cnn.runtime import hugepages


@dataclass(frozen=True)
class BenchConfig:
    """Benchmark the train step of the default model: JAX jit against PyTorch eager and compile."""

    model: str | None = None
    """A ModelConfig JSON file to time instead of the default model (e.g. docs/experiments/arch_seed.json)."""
    torch_model: str | None = None
    """A PyTorch classifier to time instead, `pkg.module:factory` (the trainers' --torch-model): torch rows
    step the module itself, JAX rows its port (`parity.port`, the model.py `flax_cnn.train --torch-model`
    trains). GFLOP/s count the MACs read from the port's program (`flax_cnn.model.trace_stats`)."""
    batch_size: tuple[int, ...] = (128,)
    """Batch sizes to time."""
    steps: int = 10
    """Timed steps per framework and repetition."""
    reps: int = 5
    """Interleaved repetitions (the median is over reps × steps single-step times)."""
    warmup: int = 3
    """Untimed steps after compilation."""
    settle: int = 1
    """Steps at the start of each repetition timed apart (`settle_ms_median`), outside the step median: the
    first step after the other frameworks ran re-faults memory a VM's hypervisor may have reclaimed meanwhile,
    which a training loop, stepping back to back, does not."""
    frameworks: tuple[str, ...] = ("jax", "jax_1dev", "torch_eager", "torch_compile", "jax_bf16", "torch_eager_bf16",
                                   "torch_compile_bf16")
    """Which to time: jax (all local devices), jax_1dev, torch_eager, torch_compile, and in bf16 jax_bf16 (one
    device), torch_eager_bf16, torch_compile_bf16."""
    peaks: bool = True
    """Also time each framework's matmul peak in the rows' precisions, interleaved with the steps."""
    peak_size: int = 0
    """n of the n×n×n peak matmul (0 = 2048 on CPU, 8192 on GPU)."""
    peak_steps: int = 3
    """Timed matmuls per framework, precision and repetition."""
    pipeline: bool = True
    """Also time the input pipeline alone (albumentations with 0..N grain workers, device path)."""
    data_dir: str | None = None
    """CIFAR-10 for the pipeline timings (default $CIFAR10_DIR or ../shared/data/cifar10; random images if absent)."""
    cpu_devices: int = 0
    """XLA CPU devices for the `jax` row (0 = one per core: the batch sharded over them); the trainer's
    default, one device, is the `jax_1dev` row."""
    threads: int = 0
    """torch intra-op threads (0 = one per core)."""
    tf32: bool = False
    """On GPU: allow TF32 in both frameworks (default: full float32 in both)."""
    json: str | None = None
    """Write all rows and the machine description as JSON."""
    plot: str | None = None
    """Write a bar chart of step times (PNG)."""


@dataclass
class Row:
    framework: str
    batch_size: int
    device: str
    step_ms_median: float
    step_ms_p25: float
    step_ms_p75: float
    images_per_second: float
    compile_s: float | None = None
    precision: str | None = None
    gflops: float | None = None
    """Achieved: 6 × forward MACs per image × batch FLOP per median step (forward 2, backward 4 per MAC)."""
    peak: str | None = None
    """The `peaks` entry `fraction_of_peak` divides by: this row's framework and precision."""
    fraction_of_peak: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Variant:
    """One benchmark row's step: which library, precision, and JAX devices (0 = all) or torch.compile."""

    library: str
    precision: str
    devices: int = 1
    compiled: bool = False

    @property
    def peak(self) -> str:
        return f"{self.library}_{self.precision}"


VARIANTS = {
    "jax": Variant("jax", "fp32", devices=0), "jax_1dev": Variant("jax", "fp32"), "jax_bf16": Variant("jax", "bf16"),
    "torch_eager": Variant("torch", "fp32"), "torch_compile": Variant("torch", "fp32", compiled=True),
    "torch_eager_bf16": Variant("torch", "bf16"), "torch_compile_bf16": Variant("torch", "bf16", compiled=True),
}


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(cfg: BenchConfig) -> dict:
    import jax
    import torch

    import flax
    from parity import peaks

    info = {
        "cpu": _cpu_model(), "cpu_isa": peaks.cpu_isa(), "cores": os.cpu_count(), "platform": platform.platform(),
        "python": platform.python_version(), "jax": jax.__version__, "flax": flax.__version__,
        "torch": torch.__version__, "jax_devices": [str(d) for d in jax.local_devices()],
        "jax_backend": jax.default_backend(), "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(), "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "jax_default_matmul_precision": str(jax.config.jax_default_matmul_precision),
        "malloc": hugepages.describe(),
    }
    info["isa"] = info["cpu_isa"]  # on a GPU, the device's name instead
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(), torch_allow_tf32_matmul=torch.backends.cuda.matmul.allow_tf32,
                    torch_allow_tf32_cudnn=torch.backends.cudnn.allow_tf32, isa=torch.cuda.get_device_name())
    elif jax.default_backend() != "cpu":
        info["isa"] = jax.devices()[0].device_kind
    return info


def _set_precision(tf32: bool) -> None:
    """Make both frameworks use the same float32 precision on GPU (TF32 is the default in both)."""
    import jax
    import torch

    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    jax.config.update("jax_default_matmul_precision", "tensorfloat32" if tf32 else "highest")


# -- the step of each framework -------------------------------------------------------------
Step = tuple[Callable[[], None], Callable[[], None], str, Callable[[], dict]]


@dataclass
class TorchModel:
    """`--torch-model`: the factory's module for the torch rows, its emitted port for the JAX rows (each row
    builds a fresh one: a step donates or updates what it is given)."""

    spec: str
    emitted_dir: Path | None = None  # set by port(), after JAX's devices are configured
    macs: int | None = None  # per image, from the port's program; set by port()

    def torch_module(self):
        from torch_ref.model import build_torch_model

        return build_torch_model(self.spec, seed=0)

    def flax_module(self):
        from flax_cnn.model.emitted import EmittedModel

        return EmittedModel(self.emitted_dir / "model.py").build()


    def port(self) -> None:
        """Port the module into a temporary folder (this initialises JAX); one line and exit 2 if it cannot be."""
        import tempfile

        import torch

        from parity.port import port

        out = Path(tempfile.mkdtemp(prefix="parity_bench_port_"))
        try:
            x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
            port(self.torch_module(), x, out_dir=out)
        except ValueError as e:  # PortError
            print(f"python -m parity.bench: error: --torch-model {self.spec}: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        self.emitted_dir = out
        from flax_cnn.model.trace_stats import trace_stats

        self.macs = trace_stats(self.flax_module(), (32, 32, 3)).macs


def load_torch_model(spec: str) -> TorchModel:
    """Build it once to check it (one line and exit 2 if the factory fails or its output is not (N, 10))."""
    from flax_cnn.model.config import ConfigError
    from torch_ref.model import build_torch_model

    try:
        build_torch_model(spec, seed=0)
    except ConfigError as e:
        print(f"python -m parity.bench: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    return TorchModel(spec)


def load_model_config(path: str | None):
    """The ModelConfig of `--model` (default: `ModelConfig()`), read as the trainers read theirs; a bad
    file stops the benchmark with the trainers' one line."""
    from flax_cnn.model.config import ConfigError, ModelConfig
    from flax_cnn.runtime.faults import FileError
    from flax_cnn.training.config import read_model_file

    if path is None:
        return ModelConfig()
    try:
        return read_model_file(path)
    except (ConfigError, FileError) as e:
        raise SystemExit(f"python -m parity.bench: {e}") from None


def jax_step(batch: int, n_devices: int, precision: str = "fp32", model_config=None) -> Step:
    """(one step, sync, device description, memory) of the JAX trainer's own step, sharded over devices."""
    import jax

    from flax_cnn.runtime import devices
    from flax_cnn.training import optim
    from flax_cnn.training.engine import compute_dtype
    from flax_cnn.model.cnn import build_model
    from flax_cnn.training.step import Model, init_state, make_train_step

    mesh = devices.make_mesh(n_devices)
    module = model_config.flax_module() if isinstance(model_config, TorchModel) else build_model(model_config)
    model = Model.split(module)
    tx = optim.adam(np.full(10_000, 1e-3), weight_decay=1e-4)
    step = make_train_step(model, tx, label_smoothing=0.1, compute_dtype=compute_dtype(precision))
    rng = np.random.default_rng(0)
    x = jax.device_put(rng.standard_normal((batch, 32, 32, 3)).astype(np.float32), devices.data_sharding(mesh))
    y = jax.device_put(rng.integers(0, 10, batch).astype(np.int32), devices.data_sharding(mesh))
    rep = devices.replicated(mesh)
    box = {"state": jax.device_put(init_state(model, tx), rep)}
    key = jax.device_put(jax.random.key_data(jax.random.key(0)), rep)

    def one():
        box["state"] = step(box["state"], x, y, key)

    def memory() -> dict:
        """XLA's own accounting of the compiled step (exact, unlike RSS), plus the device peak on GPU."""
        out = {}
        ma = step.lower(box["state"], x, y, key).compile().memory_analysis()  # the executable already built
        if ma is not None:
            out.update({f"xla_{k}_mib": round(getattr(ma, f"{k}_size_in_bytes") / 2**20, 1)
                        for k in ("temp", "argument", "output")})
        stats = jax.devices()[0].memory_stats() or {}
        if "peak_bytes_in_use" in stats:
            out["device_peak_mib"] = round(stats["peak_bytes_in_use"] / 2**20, 1)
        return out

    return (one, lambda: jax.block_until_ready(box["state"]), f"{mesh.devices.size}x {jax.devices()[0].platform}",
            memory)


def torch_step(batch: int, compiled: bool, precision: str = "fp32", model_config=None) -> Step:
    """The torch trainer's step: eager or torch.compile'd forward, bf16 autocast for `precision` "bf16"."""
    import torch
    import torch.nn.functional as F

    import torch_ref
    from torch_ref.precision import autocast
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = (model_config.torch_module() if isinstance(model_config, TorchModel)
             else torch_ref.build_model(model_config, seed=0)).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-4)
    fwd = torch.compile(model) if compiled else model
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=g).to(dev)
    y = torch.randint(0, 10, (batch,), generator=g).to(dev)

    def one():
        with autocast(precision, dev):
            loss = F.cross_entropy(fwd(x).float(), y, label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def memory() -> dict:  # the caching allocator's peak on GPU; on CPU torch keeps no such count
        return {"device_peak_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)} if dev.type == "cuda" else {}

    return one, sync, str(dev), memory


def _make(framework: str, batch: int, model_config=None):
    if framework not in VARIANTS:
        raise ValueError(f"unknown framework {framework!r} ({', '.join(VARIANTS)})")
    v = VARIANTS[framework]
    if v.library == "jax":
        return jax_step(batch, v.devices, v.precision, model_config)
    return torch_step(batch, v.compiled, v.precision, model_config)


class Peaks:
    """Matmul peaks of the libraries and precisions the rows use, timed inside the rows' rotation."""

    def __init__(self, cfg: BenchConfig, names: list[str], log=print):
        from parity import peaks

        self.n = cfg.peak_size or peaks.default_size(_on_gpu())
        self.steps, self.runners, self.times = cfg.peak_steps, {}, {}
        for name in dict.fromkeys(names):
            library, precision = name.split("_")
            one, sync = peaks.matmul(library, precision, self.n)
            for _ in range(2):  # compile, warm up
                _timed(one, sync)
            self.runners[name], self.times[name] = (one, sync), []
        log(f"  matmul peaks {', '.join(self.runners)} at {self.n}³")

    def time(self, name: str) -> None:
        one, sync = self.runners[name]
        self.times[name] += [_timed(one, sync) for _ in range(self.steps)]

    def results(self) -> dict[str, dict]:
        from parity import peaks

        out = {}
        for name, times in self.times.items():
            library, precision = name.split("_")
            med = float(np.median(times))
            out[name] = {"library": library, "precision": precision, "size": self.n, "ms_median": round(1e3 * med, 2),
                         "gflops": round(peaks.gflops(self.n, med), 1),
                         "gflops_best": round(peaks.gflops(self.n, float(np.min(times))), 1), "samples": len(times)}
        return out


def _on_gpu() -> bool:
    import jax

    return jax.default_backend() == "gpu"


def step_flops(batch: int, model_config=None) -> float | None:
    """FLOP of one train step (default model unless given): 2 per forward MAC, 4 per backward MAC (input and weight);
    a --torch-model's MACs are its port's (None before it is ported)."""
    from flax_cnn.model import analysis
    from flax_cnn.model.config import ModelConfig

    if isinstance(model_config, TorchModel):
        return None if model_config.macs is None else 6.0 * model_config.macs * batch
    return 6.0 * analysis.macs(model_config or ModelConfig()) * batch


def add_fractions(rows: list[Row], peaks: dict[str, dict], model_config=None) -> None:
    """Each step row's achieved GFLOP/s and its fraction of its own framework and precision's peak."""
    for r in rows:
        if r.framework not in VARIANTS or step_flops(r.batch_size, model_config) is None:
            continue
        # 4 significant digits, not decimals: a tiny test model on a loaded machine runs at 1e-3 GFLOP/s
        r.gflops = float(f"{step_flops(r.batch_size, model_config) / (r.step_ms_median / 1e3) / 1e9:.4g}")
        name = VARIANTS[r.framework].peak
        if name in peaks:
            r.peak, r.fraction_of_peak = name, float(f"{r.gflops / peaks[name]['gflops']:.4g}")


def time_steps(cfg: BenchConfig, batch: int, log=print, peaks: Peaks | None = None, model_config=None) -> list[Row]:
    """Compile + warm up each framework, then interleave timed repetitions (and the peak matmuls)."""
    runners, model_config = {}, model_config or load_model_config(cfg.model)
    for fw in cfg.frameworks:
        one, sync, dev, memory = _make(fw, batch, model_config)
        compile_s = _timed(one, sync)
        for _ in range(cfg.warmup):
            one()
        sync()
        runners[fw] = (one, sync, dev, compile_s, [], memory())
        log(f"  {fw:<14} B={batch}: first step (compile) {compile_s:6.1f} s")
    kernel = {fw: np.zeros(3) for fw in runners}  # page faults, kernel and all CPU seconds (all threads) while fw ran
    order = np.random.default_rng(0)
    settle = {fw: [] for fw in runners}
    rotation = [("step", fw) for fw in runners] + [("peak", name) for name in (peaks.runners if peaks else ())]
    for _ in range(cfg.reps):
        for i in order.permutation(len(rotation)):
            kind, fw = rotation[i]
            if kind == "peak":
                peaks.time(fw)
                continue
            one, sync, _, _, times, _ = runners[fw]
            for _ in range(cfg.settle):
                settle[fw].append(_timed(one, sync))
            before = _kernel_usage()
            for _ in range(cfg.steps):
                times.append(_timed(one, sync))
            kernel[fw] += _kernel_usage() - before
    rows = []
    for fw, (_, _, dev, compile_s, times, mem) in runners.items():
        ms = 1e3 * np.asarray(times)
        med = float(np.median(ms))
        faults, kernel_s, cpu_s = kernel[fw] / len(times)
        extra = {**mem, "page_faults_per_step": round(faults), "kernel_ms_per_step": round(1e3 * kernel_s, 1),
                 "cpu_ms_per_step": round(1e3 * cpu_s, 1)}
        if settle[fw]:
            extra["settle_ms_median"] = round(1e3 * float(np.median(settle[fw])), 2)
        rows.append(Row(fw, batch, dev, round(med, 2), round(float(np.percentile(ms, 25)), 2),
                        round(float(np.percentile(ms, 75)), 2), round(batch / med * 1e3, 1), round(compile_s, 2),
                        precision=VARIANTS[fw].precision, extra=extra))
    return rows


def _timed(one: Callable[[], None], sync: Callable[[], None]) -> float:
    """Seconds for one step, ended by a device synchronisation."""
    t = time.perf_counter()
    one()
    sync()
    return time.perf_counter() - t


def _kernel_usage() -> np.ndarray:
    """(minor page faults, system CPU s, user + system CPU s) of this process so far: the cost of fresh memory
    per step, and the work of a step whatever else the machine runs (on a loaded machine wall time also
    counts waiting, and spinning OpenMP threads turn waiting into CPU time: read both)."""
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return np.array([ru.ru_minflt, ru.ru_stime, ru.ru_utime + ru.ru_stime], dtype=float)


def time_pipeline(cfg: BenchConfig, log=print) -> list[Row]:
    from flax_cnn.data import throughput

    d = (cfg.data_dir or os.environ.get("CIFAR10_DIR")
         or str(Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"))
    from flax_cnn.data.stats import channel_stats
    if Path(d, "data_batch_1.bin").is_file():
        from flax_cnn.data.sources import load_cifar10
        train = load_cifar10(d, "train", limit=10_000)
        images, labels = train.images, train.labels
    else:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (10_000, 32, 32, 3), dtype=np.uint8)
        labels = (np.arange(10_000) % 10).astype(np.int32)
    stats = channel_stats(images)
    rows = []
    cores = os.cpu_count() or 1
    for mode, workers in [("albumentations", w) for w in sorted({0, 1, cores})] + [("device", 0), ("none", 0)]:
        ips = throughput.measure(images, labels, stats, augment=mode, workers=workers, batch_size=256, batches=20)
        name = f"pipeline_{mode}" + (f"_w{workers}" if mode == "albumentations" else "")
        rows.append(Row(name, 256, "cpu" if mode != "device" else "jax", float("nan"), float("nan"), float("nan"),
                        round(float(ips), 1), extra={"workers": workers}))
        log(f"  {name:<28} {ips:9.0f} images/s")
    return rows


def plot(rows: list[Row], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r for r in rows if not r.framework.startswith("pipeline")]
    batches = sorted({r.batch_size for r in steps})
    fws = list(dict.fromkeys(r.framework for r in steps))
    fig, ax = plt.subplots(figsize=(7, 4))
    w = 0.8 / len(fws)
    for i, fw in enumerate(fws):  # images/s, not ms: comparable across batch sizes
        rs = [next((r for r in steps if r.framework == fw and r.batch_size == b), None) for b in batches]
        xs = [j + i * w for j, r in enumerate(rs) if r]
        ips = [r.batch_size * 1e3 / r.step_ms_median for r in rs if r]
        err = [[v - r.batch_size * 1e3 / r.step_ms_p75 for v, r in zip(ips, [r for r in rs if r])],
               [r.batch_size * 1e3 / r.step_ms_p25 - v for v, r in zip(ips, [r for r in rs if r])]]
        ax.bar(xs, ips, w, yerr=err, label=fw, capsize=3)
    ax.set_xticks([j + w * (len(fws) - 1) / 2 for j in range(len(batches))], [f"B={b}" for b in batches])
    ax.set(ylabel="train images/s (median step, IQR)", title=title + " (higher is better)")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def table(rows: list[Row]) -> str:
    steps = [r for r in rows if not r.framework.startswith("pipeline")]
    lines = [f"{'framework':<19} {'B':>5} {'device':<10} {'step ms (median)':>17} {'IQR':>11} {'images/s':>9} "
             f"{'compile s':>9} {'GFLOP/s':>8} {'of peak':>14} {'vs torch_eager':>14}"]
    for r in steps:
        ref = next((e for e in steps if e.framework == "torch_eager" and e.batch_size == r.batch_size), None)
        ratio = f"{r.step_ms_median / ref.step_ms_median:.2f}x" if ref else "-"
        peak = f"{100 * r.fraction_of_peak:.1f}% {r.peak}" if r.fraction_of_peak is not None else "-"
        lines.append(f"{r.framework:<19} {r.batch_size:>5} {r.device:<10} {r.step_ms_median:>17.1f} "
                     f"{f'{r.step_ms_p25:.0f}-{r.step_ms_p75:.0f}':>11} {r.images_per_second:>9.0f} "
                     f"{r.compile_s if r.compile_s is not None else float('nan'):>9.1f} "
                     f"{r.gflops if r.gflops is not None else float('nan'):>8.1f} {peak:>14} {ratio:>14}")
    return "\n".join(lines)


def peak_table(peaks: dict[str, dict]) -> str:
    return "\n".join(f"  matmul peak {name:<11} {p['size']}³: {p['gflops']:8.1f} GFLOP/s median, "
                     f"{p['gflops_best']:.1f} best of {p['samples']}" for name, p in peaks.items())


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    cfg = tyro.cli(BenchConfig, args=argv, prog="python -m parity.bench")
    if cfg.model and cfg.torch_model:
        raise SystemExit("python -m parity.bench: --model and --torch-model exclude each other")
    # a bad file or factory fails before anything is timed
    model_config = load_torch_model(cfg.torch_model) if cfg.torch_model else load_model_config(cfg.model)
    import jax

    from flax_cnn.runtime.devices import physical_cores
    jax.config.update("jax_num_cpu_devices", cfg.cpu_devices or physical_cores())
    import torch
    torch.set_num_threads(cfg.threads or physical_cores())
    _set_precision(cfg.tf32)
    if isinstance(model_config, TorchModel):
        model_config.port()
    info = machine(cfg)
    info["load_average_start"] = [round(v, 2) for v in os.getloadavg()]
    if cfg.torch_model:
        print(f"model: {cfg.torch_model} (torch rows: the module; JAX rows: its port, "
              f"{model_config.emitted_dir}/model.py), {step_flops(1, model_config) / 1e6:.1f} MFLOP per image and step")
    else:
        print(f"model: {cfg.model or 'ModelConfig() (the default)'}, {step_flops(1, model_config) / 1e6:.1f} MFLOP per image and step")
    print(f"machine: {info['cpu']} ({info['isa']}), {info['cores']} cores, load average {info['load_average_start'][0]}; "
          f"jax {info['jax']} ({len(info['jax_devices'])} "
          f"{info['jax_backend']} devices), torch {info['torch']} ({info['torch_threads']} threads); "
          f"GLIBC_TUNABLES={info['malloc']['glibc_tunables']}, transparent huge pages: {info['malloc']['transparent_hugepage']}")
    rows: list[Row] = []
    unknown = [f for f in cfg.frameworks if f not in VARIANTS]
    if unknown:
        raise SystemExit(f"python -m parity.bench: unknown --frameworks {unknown} (choose from {', '.join(VARIANTS)})")
    timer = Peaks(cfg, [VARIANTS[f].peak for f in cfg.frameworks]) if cfg.peaks else None
    for b in cfg.batch_size:
        print(f"train step, batch {b}:")
        rows += time_steps(cfg, b, peaks=timer, model_config=model_config)
    peak_results = timer.results() if timer else {}
    add_fractions(rows, peak_results, model_config)
    print(table(rows))
    print(peak_table(peak_results))
    for r in rows:
        if r.extra:
            print(f"  {r.framework} B={r.batch_size} (memory per device; faults and kernel time per timed step; first step of a repetition): "
                  + ", ".join(f"{k} {v}" for k, v in r.extra.items()))
    if cfg.pipeline:
        print("input pipeline alone (batch 256):")
        rows += time_pipeline(cfg)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    info["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
    print(f"peak RSS of this process: {peak:.0f} MiB; load average at the end {info['load_average_end'][0]} "
          f"({info['cores']} cores)")
    if cfg.json:
        Path(cfg.json).write_text(json.dumps({"machine": info, "config": cfg.__dict__, "peak_rss_mib": round(peak),
                                              "model_config": None if cfg.torch_model else model_config.to_dict(),
                                              "torch_model": cfg.torch_model, "peaks": peak_results,
                                              "step_gflop": {b: step_flops(b, model_config) / 1e9
                                                             for b in cfg.batch_size},
                                              "rows": [r.__dict__ for r in rows]}, indent=2, default=str) + "\n")
    if cfg.plot:
        plot(rows, Path(cfg.plot), f"train step, {info['cpu']} ({info['isa']})")
    return 0


if __name__ == "__main__":
    hugepages.reexec()
    sys.exit(main())
