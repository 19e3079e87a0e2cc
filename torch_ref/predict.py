"""`python -m torch_ref.predict --checkpoint RUN_DIR img.png …`: top-3 classes per image, in torch."""

import sys

from flax_cnn.inference.evaluation import predict_main


def _load(run, which):
    from torch_ref.classifier import load_classifier

    return load_classifier(run, which)


def main(argv=None) -> int:
    return predict_main(_load, argv, "python -m torch_ref.predict")


if __name__ == "__main__":
    sys.exit(main())
