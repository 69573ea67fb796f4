"""Handwriting photographed: MNIST-style digits put on paper by the camera model and cut out
again by the runtime's framing (``python -m train --photograph mnist5k=K``).

MNIST digits are clean scans, centred by their centre of mass; the camera demo feeds the
model what its framing cuts from a tilted, blurred, unevenly lit sheet. Photographing the
training split's own digits shows the model that second kind of picture of the same
handwriting, without a single validation or test digit in it.

Each photograph's randomness comes from the seed, the digit's pixels and the copy number,
so a digit is photographed the same whatever split or order it arrives in. Sets are cached
like the printed source's.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np

from runtime.framing import default_roi
from scenes import camera, printed
from scenes.cache import cache_dir, load_set, store_set

log = logging.getLogger(__name__)
VERSION = 1  # bump when the rendering changes in a way the code digests cannot see


def photographed(digits: np.ndarray, copies: int, seed: int,
                 cache: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``copies`` framed photographs of each white-on-black digit of ``digits`` ((N, H, W)
    uint8). Returns the photographs ((M, 28, 28) uint8) and, for each, the index of the digit
    it shows. A digit whose every retake reads "no digit" is left out, as in the printed set.
    """
    folder = cache_dir() if cache is None else cache
    key = printed.digest({"version": VERSION, "copies": copies, "seed": seed,
                          "digits": hashlib.sha256(digits.tobytes()).hexdigest(),
                          "shape": list(digits.shape), "code": printed.code_digests(
                              "handwritten.py")})
    path = folder / f"handwritten-{key}.npz"
    cached = load_set(path, "images", "sources")
    if cached is not None:
        return cached[0], cached[1]
    roi = default_roi(camera.HEIGHT, camera.WIDTH)
    images = np.zeros((len(digits) * copies, 28, 28), np.uint8)
    sources = np.zeros(len(digits) * copies, np.int64)
    log.info("photographing %d handwritten digits %d times each into %s", len(digits), copies,
             path)
    started, kept = time.perf_counter(), 0
    for index, digit in enumerate(digits):
        coverage = camera.mnist_coverage(digit)
        name = int.from_bytes(hashlib.sha256(digit.tobytes()).digest()[:4], "little")
        for copy in range(copies):
            framed = printed.framed_photo(coverage, np.random.default_rng([seed, name, copy]),
                                          roi)
            if framed is not None:
                images[kept], sources[kept] = framed, index
                kept += 1
        if (index + 1) % 1000 == 0 or index + 1 == len(digits):
            log.info("handwritten photographs: %d/%d digits (%.0f s)", index + 1, len(digits),
                     time.perf_counter() - started)
    images, sources = images[:kept], sources[:kept]
    store_set(path, images=images, sources=sources)
    return images, sources
