"""`python -m torch_ref.evaluate --checkpoint RUN_DIR`: test accuracy of a run of either twin, in torch."""

import sys

from flax_cnn.inference.evaluation import evaluate_main


def _load(run, which):
    from torch_ref.classifier import load_classifier

    return load_classifier(run, which)


def main(argv=None) -> int:
    return evaluate_main(_load, "torch", argv, "python -m torch_ref.evaluate")


if __name__ == "__main__":
    sys.exit(main())
