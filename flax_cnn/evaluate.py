"""`python -m flax_cnn.evaluate --checkpoint RUN_DIR`: test accuracy of a run of either twin, in JAX."""

import sys

from flax_cnn.inference.evaluation import evaluate_main


def _load(run, which):
    from flax_cnn.inference.classifier import load_classifier

    return load_classifier(run, which)


def main(argv=None) -> int:
    return evaluate_main(_load, "jax", argv, "python -m flax_cnn.evaluate")


if __name__ == "__main__":
    sys.exit(main())
