"""CIFAR-10 data for both twins: sources → stats → augment → pipeline (numpy out, framework-free).

    data = load_cifar10(args.data_dir, "train", limit=args.train_examples)   # sources.py
    stats = channel_stats(data.images)                                       # stats.py
    loader = TrainLoader(data.images, data.labels, batch_size=128, seed=0,   # pipeline.py
                         augment="albumentations", augment_config=AugmentConfig(), stats=stats)
    for images, labels in loader.epoch(epoch, start_step): ...

Names are imported lazily: JAX (flax_cnn.augment.on_device) and albumentations load only when used.
"""

from importlib import import_module

_EXPORTS = {
    "DataError": "flax_cnn.data.errors",
    "Cifar10": "flax_cnn.data.cifar10",
    "CLASS_NAMES": "flax_cnn.data.cifar10",
    "load_cifar10": "flax_cnn.data.sources",
    "SOURCE_HELP": "flax_cnn.data.sources",
    "ChannelStats": "flax_cnn.data.stats",
    "channel_stats": "flax_cnn.data.stats",
    "normalize": "flax_cnn.data.stats",
    "AugmentConfig": "flax_cnn.augment.config",
    "AugmentMode": "flax_cnn.augment.config",
    "AUGMENT_MODES": "flax_cnn.augment.config",
    "TrainLoader": "flax_cnn.data.pipeline",
    "EpochIterator": "flax_cnn.data.pipeline",
    "EvalLoader": "flax_cnn.data.pipeline",
    "make_device_augment": "flax_cnn.augment.on_device",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'flax_cnn.data' has no attribute {name!r}")
