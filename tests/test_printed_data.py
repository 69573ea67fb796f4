"""The printed source, sources joined with '+', and splits that hold font families out."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from scenes import fonts, printed
from scenes.cache import CACHE_ENV
from train.errors import DataError
from train.joined import join_sources
from train.run import choose_min_confidence
from train.sources import ArraySource, FolderSource, load_source
from train.split import grouped_split, split_by_part


def _families(n_groups: int, per_group: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = np.repeat([f"family {g}" for g in range(n_groups)], per_group)
    return rng.integers(0, 10, len(groups)), groups


@pytest.mark.parametrize("n_groups,test_fraction,held", [(8, 0.15, 2), (3, 0.15, 1),
                                                          (2, 0.9, 1), (10, 0.3, 3)])
def test_family_split_leaks_nothing(n_groups: int, test_fraction: float, held: int) -> None:
    labels, groups = _families(n_groups, 60)
    indices, families = grouped_split(labels, groups, 0.1, test_fraction, seed=3)
    train, val, test = (set(groups[getattr(indices, s)]) for s in ("train", "val", "test"))
    assert len(test) == held and set(families.test) == test
    assert not test & (train | val)  # no test family appears in training or validation
    assert set(families.train) == train and set(families.val) == val
    every = np.concatenate([indices.train, indices.val, indices.test])
    assert sorted(every.tolist()) == list(range(len(labels)))  # each image exactly once
    # Validation is a stratified share of the training families' images, every class.
    for digit in range(10):
        rest = np.flatnonzero((labels == digit) & ~np.isin(groups, list(test)))
        in_val = np.isin(rest, indices.val).sum()
        assert in_val == max(1, round(len(rest) * 0.1))


def test_family_split_follows_the_seed() -> None:
    labels, groups = _families(8, 30)
    first = grouped_split(labels, groups, 0.1, 0.15, seed=1)
    assert grouped_split(labels, groups, 0.1, 0.15, seed=1)[1] == first[1]
    assert len({grouped_split(labels, groups, 0.1, 0.15, seed=s)[1].test for s in range(8)}) > 1
    with pytest.raises(DataError, match="two groups"):
        grouped_split(labels, np.full(len(labels), "only"), 0.1, 0.15, seed=1)


def test_joined_parts_are_each_split_stratified() -> None:
    rng = np.random.default_rng(0)
    labels = np.concatenate([rng.integers(0, 10, 2000), rng.integers(0, 10, 600)])
    parts = np.array(["mnist5k"] * 2000 + ["printed"] * 600)
    groups = np.array([""] * 2000 + [f"f{i % 6}" for i in range(600)])
    indices, held = split_by_part(labels, parts, groups, 0.1, 0.15, seed=4)
    assert list(held) == ["printed"] and len(held["printed"].test) == 1
    ungrouped = np.flatnonzero(parts == "mnist5k")
    for digit in range(10):  # the ungrouped part: 15 % of every class in the test split
        members = ungrouped[labels[ungrouped] == digit]
        assert np.isin(members, indices.test).sum() == max(1, round(len(members) * 0.15))
        assert np.isin(members, indices.val).sum() == max(1, round(len(members) * 0.1))
    tested = groups[indices.test[parts[indices.test] == "printed"]]
    assert set(tested) == set(held["printed"].test)
    assert not set(tested) & set(groups[indices.train])
    # Merged, then shuffled: both parts appear early in every split.
    assert len(set(parts[indices.train[:100]])) == 2
    assert sorted(np.concatenate([indices.train, indices.val, indices.test]).tolist()) == \
        list(range(len(labels)))


def _array(name: str, labels: list[int], names: tuple[str, ...], framing: str = "digit",
           size: int = 28) -> ArraySource:
    images = np.zeros((len(labels), size, size), np.uint8)
    return ArraySource(name, images, np.array(labels), names, framing)


def test_join_unites_labels_by_name_and_keeps_parts() -> None:
    a = _array("a", [0, 1, 1], ("0", "1"))
    b = _array("b", [0, 1], ("1", "2"), size=8)  # other labels, other size
    joined = join_sources([a, b], ["a", "b"])
    assert joined.label_names == ("0", "1", "2")
    assert joined.labels.tolist() == [0, 1, 1, 1, 2]
    assert joined.parts.tolist() == ["a", "a", "a", "b", "b"]
    assert joined.images.shape == (5, 28, 28) and joined.groups is None


def test_join_refuses_mixed_kinds() -> None:
    digits, photos = _array("a", [0, 1], ("0", "1")), _array("b", [0, 1], ("0", "1"), "none")
    with pytest.raises(DataError, match="different kinds of image"):
        join_sources([digits, photos], ["a", "b"])
    folder = FolderSource("f", np.array(["x.png", "y.png"]), np.array([0, 1]), ("0", "1"),
                          "digit")
    with pytest.raises(DataError, match="cannot be joined with image folders"):
        join_sources([digits, folder], ["a", "f"])
    with pytest.raises(DataError, match="distinct sources"):
        load_source("mnist5k+mnist5k")
    with pytest.raises(DataError, match="no such folder or dataset"):
        load_source("mnist5k+nothing")


@pytest.fixture()
def small_printed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The printed source at one photograph per digit and font, cached under tmp_path."""
    monkeypatch.setattr(printed, "PER_DIGIT", 1)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    return tmp_path


def test_printed_source_is_grouped_by_family_and_cached(small_printed: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    source = load_source("printed")
    found = fonts.installed_fonts()
    assert len(source.labels) == 10 * len(found) and source.framing == "digit"
    assert set(source.groups) == set(fonts.families(found))
    assert source.images.shape[1:] == (28, 28) and source.images.max() == 255
    cached = list(small_printed.glob("printed-*.npz"))
    assert len(cached) == 1

    def no_rendering(*args: object) -> None:
        raise AssertionError("rendered again instead of read from the cache")

    monkeypatch.setattr(printed, "render_digit", no_rendering)
    again = load_source("printed")  # read back, not rendered again
    assert np.array_equal(again.images, source.images)


def test_printed_renders_follow_the_seed_in_any_order(tmp_path: Path) -> None:
    some = fonts.installed_fonts()[:2]
    one = printed.printed_set(some, 2, seed=5, cache=tmp_path / "one")
    again = printed.printed_set(some, 2, seed=5, cache=tmp_path / "two")  # rendered afresh
    other = printed.printed_set(some, 2, seed=6, cache=tmp_path / "one")
    assert np.array_equal(one.images, again.images)
    assert not np.array_equal(one.images, other.images)
    # One font's digit alone is the same images as within the whole set.
    alone = printed.render_digit(some[1], 3, 2, 5)
    assert np.array_equal(alone, one.images[(10 + 3) * 2:(10 + 3) * 2 + 2])
    # The same font file installed elsewhere (another clone, another virtualenv): the same
    # photographs, so that every figure a run reports is reproducible from any folder.
    font = next(f for f in fonts.installed_fonts() if Path(f.source).is_file())
    moved = tmp_path / "elsewhere" / Path(font.source).name
    moved.parent.mkdir()
    moved.write_bytes(Path(font.source).read_bytes())
    assert np.array_equal(printed.render_digit(replace(font, source=str(moved)), 3, 2, 5),
                          printed.render_digit(font, 3, 2, 5))
    assert printed.cache_key(some, 2, 5) != printed.cache_key(some, 3, 5)


def test_unreadable_photographs_are_retaken_not_kept_blank(monkeypatch: pytest.MonkeyPatch,
                                                           ) -> None:
    """A photograph whose ink the framing misses would be a blank image labelled as a digit
    (and its blank copies one image in several splits): it is retaken, or left out."""
    font = fonts.installed_fonts()[0]
    real = printed.frame_digit
    calls: list[bool] = []

    def every_other_misses(frame: np.ndarray, roi: tuple[int, ...]) -> object:
        calls.append(True)
        framed = real(frame, roi=roi)
        return framed if len(calls) % 2 == 0 else replace(framed, ink_found=False)

    monkeypatch.setattr(printed, "frame_digit", every_other_misses)
    images = printed.render_digit(font, 7, 3, 0)
    assert len(calls) == 6 and images.shape == (3, 28, 28)
    assert (images.reshape(3, -1).max(1) > 0).all()

    calls.clear()
    monkeypatch.setattr(printed, "frame_digit",
                        lambda frame, roi: replace(real(frame, roi=roi), ink_found=False))
    assert printed.render_digit(font, 7, 2, 0).shape == (0, 28, 28)


def test_joined_default_source(small_printed: Path) -> None:
    source = load_source("mnist5k+printed")
    assert source.name == "mnist5k+printed" and source.label_names == tuple("0123456789")
    assert set(source.parts) == {"mnist5k", "printed"}
    assert (source.groups[source.parts == "mnist5k"] == "").all()
    assert (source.groups[source.parts == "printed"] != "").all()


def test_default_training_reports_each_source(trained_bundle: Path) -> None:
    """The session model trained on the default data, mnist5k+printed+mnist-extra."""
    metrics = json.loads((trained_bundle / "metrics.json").read_text())
    assert set(metrics["by_source"]) == {"mnist5k", "printed", "mnist-extra"}
    sources = metrics["dataset"]["sources"]
    for name, part in metrics["by_source"].items():
        assert part["count"] == sources[name]["test"]
        matrix = np.array(part["confusion_matrix"])
        assert matrix.shape == (10, 10) and matrix.sum() == part["count"]
        assert 0.0 <= part["accuracy"] <= 1.0
    printed_part = sources["printed"]
    held = set(printed_part["test_families"])
    assert held and not held & (set(printed_part["train_families"])
                                | set(printed_part["val_families"]))
    assert metrics["test"]["count"] == sum(s["test"] for s in sources.values())
    table = metrics["validation"]["confidence"]
    assert table[0]["min_confidence"] == 0.0 and table[0]["answered"] == 1.0
    assert all(a["answered"] >= b["answered"] for a, b in itertools.pairwise(table))
    # The "not sure" threshold is chosen from this table and travels in the model's spec.
    for row in table:
        withheld = row["withheld_wrong"] + row["withheld_right"]
        assert withheld == round((1 - row["answered"]) * metrics["dataset"]["val"])
    chosen = metrics["validation"]["min_confidence"]
    assert chosen == choose_min_confidence(table)
    assert json.loads((trained_bundle / "spec.json").read_text())["min_confidence"] == chosen


@pytest.mark.parametrize(("rows", "chosen"), [
    ([(0.0, 0, 0), (0.3, 2, 0), (0.4, 6, 1), (0.5, 8, 5)], 0.4),  # 6 - 1 is the best net
    ([(0.0, 0, 0), (0.3, 1, 2), (0.4, 2, 5)], 0.0),  # no level gains: always answer
    ([(0.0, 0, 0), (0.3, 2, 1), (0.4, 3, 2)], 0.3),  # a tie: the lower level
    ([(0.0, 0, 0), (0.3, 2, 2), (0.4, 2, 4)], 0.0),  # as many right as wrong withheld: no gain
])
def test_min_confidence_is_chosen_net_of_right_answers(rows: list[tuple], chosen: float) -> None:
    table = [{"min_confidence": level, "withheld_wrong": wrong, "withheld_right": right}
             for level, wrong, right in rows]
    assert choose_min_confidence(table) == chosen


def _set_name(kind: str, n: int | str) -> str:
    return f"{kind}-{printed.digest({'n': n})}.npz"  # named as the renderers name sets


def test_cache_keeps_the_recently_used_sets_of_each_kind(tmp_path: Path) -> None:
    """Writing a set prunes its kind to the KEEP most recently used; reading one marks it
    used; other kinds and other files are never touched."""
    import os

    from scenes.cache import KEEP, load_set, store_set

    images = np.zeros((2, 28, 28), np.uint8)
    paths = [tmp_path / _set_name("printed", n) for n in range(KEEP + 2)]
    for age, path in enumerate(paths):
        store_set(path, images=images)
        os.utime(path, (1000 + age, 1000 + age))  # paths[0] the oldest
    # Every write prunes to KEEP: paths[0] and [1] went when [4] and [5] were written.
    assert sorted(tmp_path.glob("printed-*.npz")) == sorted(paths[2:])
    (tmp_path / _set_name("handwritten", 0)).write_bytes(b"another kind")
    (tmp_path / "notes.txt").write_text("mine")
    assert load_set(paths[2], "images")[0].shape == images.shape  # used now: kept longest
    new = tmp_path / _set_name("printed", "new")
    store_set(new, images=images)
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {paths[2].name, paths[4].name, paths[5].name, new.name,
                    _set_name("handwritten", 0), "notes.txt"}
    assert load_set(tmp_path / _set_name("handwritten", 0), "images") is None  # damaged


def test_cache_prunes_only_its_own_sets_and_never_fails_a_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """$EDGECNN_CACHE may name a folder of the user's own files: a printed-results.npz, a
    folder named like a set, are never deleted (the folder crashed pruning). A set another
    run removes, or one that cannot be removed or written, costs a warning at most."""
    import os

    from scenes.cache import KEEP, load_set, store_set

    images = np.arange(4000, dtype=np.uint8).reshape(5, 800)
    mine = [tmp_path / "printed-results.npz", tmp_path / "handwritten-v2.npz",
            tmp_path / f"printed-{'0' * 20}.npz.bak"]
    for path in mine:
        with open(path, "wb") as handle:  # np.savez would add .npz to the .bak
            np.savez(handle, images=images)
    (tmp_path / _set_name("printed", "folder")).mkdir()
    for path in (*mine, tmp_path / _set_name("printed", "folder")):
        os.utime(path, (1, 1))  # older than every set
    for n in range(KEEP + 2):
        store_set(tmp_path / _set_name("printed", n), images=images)
    assert all(path.is_file() for path in mine)
    assert (tmp_path / _set_name("printed", "folder")).is_dir()
    assert len(list(tmp_path.glob("printed-*.npz"))) == KEEP + 2  # KEEP sets, and two others

    truncated = tmp_path / _set_name("handwritten", "cut")
    store_set(truncated, images=images)
    truncated.write_bytes(truncated.read_bytes()[:300])
    assert load_set(truncated, "images") is None  # BadZipFile: a traceback once
    assert load_set(tmp_path / _set_name("handwritten", "gone"), "images") is None

    real_unlink = Path.unlink

    def refused(path: Path, missing_ok: bool = False) -> None:
        if path.name.startswith("printed-"):
            raise PermissionError(13, "Operation not permitted")  # a sticky shared folder
        real_unlink(path, missing_ok)

    monkeypatch.setattr(Path, "unlink", refused)
    store_set(tmp_path / _set_name("printed", "shared"), images=images)  # no traceback
    assert "cannot remove" in caplog.text
    monkeypatch.undo()

    unwritable = tmp_path / "a file, not a folder"
    unwritable.write_text("")
    store_set(unwritable / _set_name("printed", 0), images=images)  # a warning, no error
    assert "not kept" in caplog.text


def test_join_drops_images_an_earlier_part_holds(caplog: pytest.LogCaptureFixture) -> None:
    """A digit in two parts could be trained on in one and tested in the other."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 28, 28), dtype=np.uint8)
    a = ArraySource("a", images[:4], np.array([0, 1, 0, 1]), ("0", "1"), "digit")
    b = ArraySource("b", images[2:], np.array([0, 1, 0, 1]), ("0", "1"), "digit",
                    groups=np.array(["x", "y", "z", "w"]))
    with caplog.at_level("INFO", logger="train.joined"):
        joined = join_sources([a, b], ["a", "b"])
    assert joined.parts.tolist() == ["a"] * 4 + ["b"] * 2
    assert len({image.tobytes() for image in joined.images}) == 6
    assert joined.groups.tolist() == ["", "", "", "", "z", "w"]
    assert "2 images of b are also in a" in caplog.text
    with pytest.raises(DataError, match="every image of b is also in a"):
        join_sources([a, ArraySource("b", images[:2], np.array([0, 1]), ("0", "1"), "digit")],
                     ["a", "b"])

