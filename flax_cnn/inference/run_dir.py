"""Read a run directory written by either trainer: config, architecture, data statistics, weights.

Weights are safetensors in torch naming (`model.safetensors` final, `best.safetensors` best test
accuracy), so a run of either twin can be evaluated by the other.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from flax_cnn.model.config import ConfigError, ModelConfig
from flax_cnn.data.stats import ChannelStats
from flax_cnn.runtime.faults import FileError, one_line
from flax_cnn.runtime.files import read_json
from flax_cnn.training.config import TrainConfig

WEIGHTS = {"final": "model.safetensors", "best": "best.safetensors"}


@dataclass(frozen=True)
class RunDir:
    path: Path
    config: TrainConfig
    model_config: ModelConfig | None  # None for a --torch-model / --flax-model run
    stats: ChannelStats
    class_names: tuple[str, ...]
    model_files: dict = field(default_factory=dict)  # config.json's records of those models' files

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """Read `path`; ConfigError (one line) if it is not a finished run directory."""
        p = Path(path)
        if not p.is_dir():
            raise ConfigError(f"--checkpoint {p}: " + ("no such directory" if not p.exists() else "not a directory"))
        for name in ("config.json", "data.json"):
            if not (p / name).is_file():
                raise ConfigError(f"--checkpoint {p}: not a run directory (no {name})")
        raw = read_json(p / "config.json", what="--checkpoint")
        data = read_json(p / "data.json", what="--checkpoint")
        try:
            cfg = TrainConfig.from_dict(raw)
            if cfg.flax_model or cfg.torch_model:  # an external model: no ModelConfig (model_files instead)
                mcfg = None
            else:
                mcfg = ModelConfig.from_dict(raw["model_config"]) if "model_config" in raw else cfg.model_config()
            model_files = raw.get("model_files") or {}
        except (ValueError, TypeError, KeyError, AttributeError, OSError) as e:
            raise FileError(f"--checkpoint {p / 'config.json'}: not a run's configuration ({one_line(e)})") from None
        try:
            stats, names = ChannelStats.from_dict(data["stats"]), tuple(data["class_names"])
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise FileError(f"--checkpoint {p / 'data.json'}: not a run's data description ({one_line(e)})") from None
        return cls(p, cfg, mcfg, stats, names, model_files)

    def weights(self, which: str = "final") -> Path:
        if which not in WEIGHTS:
            raise ConfigError(f"--which must be one of {', '.join(WEIGHTS)}, got {which!r}")
        w = self.path / WEIGHTS[which]
        if not w.is_file():
            raise ConfigError(f"--checkpoint {self.path}: no {WEIGHTS[which]} (has the run finished an epoch?)")
        return w

    def framework(self) -> str:
        """'jax' or 'torch': from summary.json, or mid-run from the checkpoint format; '?' if neither."""
        s = self.path / "summary.json"
        if s.is_file():
            try:
                return json.loads(s.read_text()).get("framework", "?")
            except (OSError, ValueError, AttributeError):
                pass  # unreadable: fall back on the checkpoint format
        for step in sorted((self.path / "checkpoints").glob("*")):
            if (step / "model.safetensors").is_file():
                return "torch"  # torch_ref.checkpoint: safetensors + JSON per step
            if (step / "_CHECKPOINT_METADATA").is_file():
                return "jax"  # orbax
        return "?"


def write_data_json(out: Path, stats: ChannelStats, class_names) -> None:
    (out / "data.json").write_text(json.dumps({"stats": stats.to_dict(), "class_names": list(class_names)}, indent=2) + "\n")
