"""Bulk prediction frames each image as ``Classifier.predict`` does: ``--framing`` (the
run-time override), ``--framed`` and ``--roi`` reach ``runtime predict``'s batched path."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import assert_clean_failure, mnist5k, run_module

import runtime
from runtime import bulk

PAPER = 210


def digit_photo(digit: int, offset: int = 0) -> np.ndarray:
    """A dark Hershey digit on light 320×240 paper, ``offset`` px right of centre."""
    photo = np.full((240, 320, 3), PAPER, np.uint8)
    cv2.putText(photo, str(digit), (125 + offset, 170), cv2.FONT_HERSHEY_SIMPLEX, 4,
                (30, 30, 30), 10, cv2.LINE_AA)
    return photo


@pytest.fixture()
def shots(tmp_path: Path) -> list[str]:
    """Photos, MNIST digits already at 28×28, a 56×56 framed digit, blank paper."""
    images, _ = mnist5k()
    found = {f"photo{d}.png": digit_photo(d, 8 * d) for d in (1, 4, 7)}
    found.update({f"mnist{i}.png": images[i] for i in range(3)})
    found["big.png"] = cv2.resize(images[3], (56, 56), interpolation=cv2.INTER_CUBIC)
    found["blank.png"] = np.full((240, 320, 3), PAPER, np.uint8)
    for name, image in found.items():
        cv2.imwrite(str(tmp_path / name), image)
    return bulk.expand([str(tmp_path)])


def labels(predictions: list[runtime.Prediction]) -> list[str]:
    return [p.label for p in predictions]


@pytest.mark.parametrize("framing", [None, "digit", "none"])
@pytest.mark.parametrize("framed", [None, True, False])
def test_rows_are_predict_for_each_image(tiny_digit_model: Path, shots: list[str],
                                         framing: str | None, framed: bool | None) -> None:
    classifier = runtime.load(tiny_digit_model, framing=framing)
    rows = list(bulk.predict_files(classifier, shots, top_k=2, batch=3, readers=2,
                                   framed=framed))
    assert [row.path for row in rows] == shots
    for row in rows:
        one = classifier.predict(cv2.imread(row.path, cv2.IMREAD_UNCHANGED), 2, framed=framed)
        assert labels(row.predictions) == labels(one), row.path
        assert row.status == ("ok" if one else bulk.NO_DIGIT), row.path
    blank = next(row for row in rows if row.path.endswith("blank.png"))
    digit_framing = framing != "none" and framed is not True
    assert (blank.status == bulk.NO_DIGIT) == digit_framing  # blank paper: no digit, no guess


def test_roi_per_image(tiny_digit_model: Path, shots: list[str]) -> None:
    """An ROI is looked in on each photo; an image it does not fit is skipped, with why."""
    roi = (100, 40, 160, 160)
    for framing in ("digit", "none"):
        classifier = runtime.load(tiny_digit_model, framing=framing)
        rows = {Path(r.path).name: r for r in bulk.predict_files(classifier, shots, roi=roi)}
        photo = cv2.imread(str(Path(shots[0]).with_name("photo7.png")))
        assert labels(rows["photo7.png"].predictions) == labels(classifier.predict(photo,
                                                                                   roi=roi))
        assert rows["mnist0.png"].status.startswith(f"{bulk.SKIPPED}: roi")
        assert "28x28" in rows["mnist0.png"].status
    with pytest.raises(runtime.ImageError, match="roi"):
        next(bulk.predict_files(classifier, shots, roi=roi, framed=True))


def test_cli_framing_override_and_framed(tiny_digit_model: Path, shots: list[str]) -> None:
    model = str(tiny_digit_model)

    def cli(*flags: str) -> tuple[dict[str, list[str]], str]:
        result = run_module("runtime", "predict", "--model", model, "--top-k", "2", *flags,
                            *shots)
        assert result.returncode == 0, result.stderr
        if "--json" not in flags:
            return {}, result.stdout
        rows = [json.loads(line) for line in result.stdout.splitlines()]
        return {r["image"]: [p["label"] for p in r["predictions"]] for r in rows}, result.stdout

    def api(framing: str | None, framed: bool | None = None) -> dict[str, list[str]]:
        classifier = runtime.load(tiny_digit_model, framing=framing)
        return {path: labels(classifier.predict(cv2.imread(path, cv2.IMREAD_UNCHANGED), 2,
                                                framed=framed)) for path in shots}

    assert cli("--json")[0] == api(None)
    raw, out = cli("--json", "--framing", "none")
    assert raw == api("none") and "framing:" not in out  # stdout stays JSON
    assert raw != api(None)  # the override changed what the model saw
    assert cli("--json", "--framed")[0] == api(None, framed=True)
    _, text = cli("--framing", "none")
    assert text.count(f"framing: none for this run (--framing); {Path(model).name}'s spec "
                      "says digit") == 1
    assert_clean_failure(run_module("runtime", "predict", "--model", model, "--framed",
                                    "--roi", "0,0,100,100", *shots), "--roi", "--framed")
