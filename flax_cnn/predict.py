"""`python -m flax_cnn.predict --checkpoint RUN_DIR img.png …`: top-3 classes per image, in JAX."""

import sys

from flax_cnn.inference.evaluation import predict_main


def _load(run, which):
    from flax_cnn.inference.classifier import load_classifier

    return load_classifier(run, which)


def main(argv=None) -> int:
    return predict_main(_load, argv, "python -m flax_cnn.predict")


if __name__ == "__main__":
    sys.exit(main())
