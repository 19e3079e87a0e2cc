"""`python -m flax_cnn.data {preview,stats,throughput}`: look at the data and its augmentation.

Bad data is reported as one line on stderr (exit code 2), without a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from flax_cnn.model.config import ConfigError
from flax_cnn.data.errors import DataError
from flax_cnn.data.sources import SOURCE_HELP, load_cifar10


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m flax_cnn.data", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)

    def common(cmd: argparse.ArgumentParser) -> None:
        cmd.add_argument("--data-dir", default=None, help=SOURCE_HELP)
        cmd.add_argument("--train-examples", type=int, default=None,
                         help="use a class-balanced subset of this many training examples (stats come from it)")

    pre = sub.add_parser("preview", help="PNG grid of originals and augmented versions (both paths)")
    common(pre)
    pre.add_argument("--out", type=Path, required=True, help="PNG file to write")
    pre.add_argument("--split", choices=("train", "test"), default="train", help="split to take examples from")
    pre.add_argument("--examples", type=int, default=10, help="rows (10 = one per class)")
    pre.add_argument("--copies", type=int, default=3, help="augmented copies per path")
    pre.add_argument("--seed", type=int, default=0, help="augmentation seed")

    st = sub.add_parser("stats", help="print counts per class and the train split's mean/std as JSON")
    common(st)

    tp = sub.add_parser("throughput", help="images/s of albumentations (per worker count), none, and device")
    common(tp)
    tp.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="grain worker counts to time")
    tp.add_argument("--batch-size", type=int, default=256)
    tp.add_argument("--batches", type=int, default=20, help="timed batches per path")
    return p


def run(args: argparse.Namespace) -> None:
    from flax_cnn.data.stats import channel_stats

    train = load_cifar10(args.data_dir, "train", limit=args.train_examples)
    stats = channel_stats(train.images)
    if args.command == "stats":
        test = load_cifar10(args.data_dir, "test")
        print(json.dumps({"source": train.source, "train": len(train), "test": len(test),
                          "train_per_class": train.counts().tolist(), "test_per_class": test.counts().tolist(),
                          "class_names": list(train.class_names), **stats.to_dict()}, indent=1))
    elif args.command == "preview":
        from flax_cnn.data.preview import render_preview

        data = train if args.split == "train" else load_cifar10(args.data_dir, "test")
        out = render_preview(data, stats, args.out, examples=args.examples, copies=args.copies, seed=args.seed)
        print(f"wrote {out}")
    elif args.command == "throughput":
        from flax_cnn.data.throughput import measure_all

        rates = measure_all(train.images, train.labels, stats, workers=tuple(args.workers),
                            batch_size=args.batch_size, batches=args.batches)
        for name, rate in rates.items():
            print(f"{name:28s} {rate:10,.0f} images/s")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        run(args)
    except (DataError, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
