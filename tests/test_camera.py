"""Frame sources: every kind, newest-frame dropping, reopening, and release on every path.

No camera, display or network: videos and images are generated in tmp_path, live cameras
are fakes injected through ``capture_factory``, and the URL test serves a generated video
from a local ``http.server`` to OpenCV's real FFmpeg backend.
"""

from __future__ import annotations

import functools
import gc
import http.server
import itertools
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from runtime.camera import Capture, FrameSource, open_source
from runtime.errors import SourceError

VIDEO_FRAMES = 12
VIDEO_SIZE = (64, 48)  # width, height
GRAY_STEP = 20         # frame i is flat gray i * 20; MJPG keeps that within a few levels
FAST = {"reopen_delay": 0.01}  # back-off that keeps failure tests well under a second


# ---- generated media -------------------------------------------------------------------

def write_video(path: Path, frames: int = VIDEO_FRAMES) -> Path:
    """MJPG in .avi: round-trips through headless OpenCV's own FFmpeg on every platform."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, VIDEO_SIZE)
    assert writer.isOpened(), "this OpenCV build cannot write MJPG .avi"
    width, height = VIDEO_SIZE
    for i in range(frames):
        writer.write(np.full((height, width, 3), i * GRAY_STEP, np.uint8))
    writer.release()
    return path


def gray_level(image: np.ndarray) -> int:
    """Which generated frame this is, from its flat gray level."""
    return round(float(image.mean()) / GRAY_STEP)


@pytest.fixture
def video(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.avi")


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """c, a, b PNGs written out of order, a corrupt bad.png, a gray one and a non-image."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for name, level in [("c.png", 3), ("a.png", 1), ("b.png", 2)]:
        cv2.imwrite(str(folder / name), np.full((8, 10, 3), level * GRAY_STEP, np.uint8))
    cv2.imwrite(str(folder / "d.png"), np.full((8, 10), 4 * GRAY_STEP, np.uint8))
    (folder / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    (folder / "notes.txt").write_text("ignored: not an image suffix")
    return folder


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[str]:
    """Serve tmp_path on 127.0.0.1; yields the base URL."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ---- fake live cameras -----------------------------------------------------------------

class FakeCapture:
    """Stands in for cv2.VideoCapture: numbered frames, optional failures, records release."""

    def __init__(self, camera: FakeCamera, opened: bool) -> None:
        self.camera, self.opened, self.reads, self.releases = camera, opened, 0, 0

    def isOpened(self) -> bool:
        return self.opened and not self.releases

    def read(self) -> tuple[bool, np.ndarray | None]:
        limit = self.camera.frames_per_open
        if not self.isOpened() or (limit is not None and self.reads >= limit):
            return False, None
        time.sleep(self.camera.delay)
        self.reads += 1
        return True, self.camera.next_image()

    def release(self) -> None:
        self.releases += 1


class FakeCamera:
    """A capture factory: fails the first ``fail_opens`` opens, then serves frames.

    Each frame carries its sequence number in two pixels, so tests can see which ones
    were skipped. ``frames_per_open`` makes every capture die after that many frames.
    """

    def __init__(self, fail_opens: int | None = 0, frames_per_open: int | None = None,
                 delay: float = 0.001) -> None:
        self.fail_opens, self.frames_per_open, self.delay = fail_opens, frames_per_open, delay
        self.captures: list[FakeCapture] = []
        self.targets: list[int | str] = []
        self._sequence = itertools.count()

    def __call__(self, target: int | str) -> Capture:
        self.targets.append(target)
        opened = self.fail_opens is not None and len(self.captures) >= self.fail_opens
        capture = FakeCapture(self, opened)
        self.captures.append(capture)
        return capture

    def next_image(self) -> np.ndarray:
        n = next(self._sequence)
        image = np.zeros((4, 6, 3), np.uint8)
        image[0, 0, :2] = n % 256, n // 256
        return image

    @property
    def all_released(self) -> bool:
        return bool(self.captures) and all(c.releases >= 1 for c in self.captures)


def sequence(image: np.ndarray) -> int:
    return int(image[0, 0, 0]) + 256 * int(image[0, 0, 1])


def capture_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("edgecnn capture")]


def assert_released(source: FrameSource, camera: FakeCamera) -> None:
    assert source.closed
    assert camera.all_released, [c.releases for c in camera.captures]
    assert not capture_threads()


# ---- files -----------------------------------------------------------------------------

def test_video_file_gives_every_frame_in_order(video: Path) -> None:
    source = open_source(str(video))
    assert source.kind == "video"
    frames = list(source)

    assert [f.index for f in frames] == list(range(VIDEO_FRAMES))
    assert [gray_level(f.image) for f in frames] == list(range(VIDEO_FRAMES))
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(frames))
    assert all(f.wait_ms >= 0 for f in frames)
    stats = source.stats
    assert (stats.captured, stats.delivered, stats.dropped) == (VIDEO_FRAMES, VIDEO_FRAMES, 0)
    assert source.closed  # reaching the end releases without an explicit close


def test_video_capture_is_released_on_early_stop_and_close_is_idempotent(video: Path) -> None:
    captures: list[cv2.VideoCapture] = []
    releases: list[int] = []

    class Recording:
        def __init__(self, target: int | str) -> None:
            self.capture = cv2.VideoCapture(target)
            captures.append(self.capture)

        def isOpened(self) -> bool:
            return self.capture.isOpened()

        def read(self) -> tuple[bool, np.ndarray | None]:
            return self.capture.read()

        def release(self) -> None:
            releases.append(1)
            self.capture.release()

    with open_source(video, capture_factory=Recording) as source:  # a Path works too
        first = list(itertools.islice(source, 3))
        more = next(source)  # its own iterator: carries on after islice
    assert [gray_level(f.image) for f in [*first, more]] == [0, 1, 2, 3]
    source.close()
    source.close()
    assert len(releases) == 1
    assert not captures[0].isOpened()
    assert list(source) == []  # a closed source just ends


def test_folder_is_sorted_by_name_and_skips_unreadable_images(image_folder: Path) -> None:
    with open_source(str(image_folder)) as source:
        frames = list(source)
    assert source.kind == "folder"
    # a, b, [bad.png skipped], c, d (grayscale, delivered as BGR); notes.txt ignored
    assert [gray_level(f.image) for f in frames] == [1, 2, 3, 4]
    assert all(f.image.shape == (8, 10, 3) and f.image.dtype == np.uint8 for f in frames)
    assert (source.stats.delivered, source.stats.skipped, source.stats.dropped) == (4, 1, 0)


def test_folder_reads_subfolders_like_predict_and_skips_hidden_names(image_folder: Path) -> None:
    """Frames in subfolders play after the folder's own, each folder sorted; hidden files
    (macOS ``._a.png``) and folders are left out, and a link back up ends the walk."""
    day = image_folder / "day2"
    day.mkdir()
    cv2.imwrite(str(day / "a.png"), np.full((8, 10, 3), 6 * GRAY_STEP, np.uint8))
    (image_folder / "._a.png").write_bytes(b"AppleDouble, not an image")
    (image_folder / ".thumbs").mkdir()
    cv2.imwrite(str(image_folder / ".thumbs" / "a.png"), np.zeros((8, 10, 3), np.uint8))
    (day / "up").symlink_to(image_folder)
    with open_source(str(image_folder)) as source:
        frames = list(source)
    assert [gray_level(f.image) for f in frames] == [1, 2, 3, 4, 6]
    assert source.stats.skipped == 1  # bad.png only


def test_single_image_file_is_one_frame(image_folder: Path) -> None:
    with open_source(image_folder / "b.png") as source:
        frames = list(source)
    assert source.kind == "image"
    assert [gray_level(f.image) for f in frames] == [2]


def test_folder_of_only_unreadable_images_fails_clearly(tmp_path: Path) -> None:
    (tmp_path / "broken.jpg").write_bytes(b"nope")
    with open_source(tmp_path) as source, pytest.raises(SourceError, match="no readable"):
        next(source)
    assert source.closed and source.stats.skipped == 1


@pytest.mark.parametrize(("make", "match"), [
    (lambda tmp: tmp / "missing.avi", "not a camera index, an existing file"),
    (lambda tmp: tmp, "has no images"),  # tmp_path holds only notes.txt
    (lambda tmp: tmp / "notes.txt", "cannot open video"),
    (lambda tmp: "ftp://example.com/x.avi", "unsupported stream URL"),
    (lambda tmp: -1, "negative"),
    (lambda tmp: "-1", "negative"),  # as typed after --source
    (lambda tmp: True, "not a source"),
])
def test_unopenable_sources_fail_at_once_with_the_fix(tmp_path: Path, make, match) -> None:
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(SourceError, match=match) as error:
        open_source(make(tmp_path))
    assert "pick another source" in str(error.value)
    assert "--" not in str(error.value)  # the runtime names no caller's flag
    assert not capture_threads()


# ---- live sources ----------------------------------------------------------------------

@pytest.mark.parametrize("source", [0, "0", " 2 "])
def test_webcam_index_opens_the_injected_capture(source: int | str) -> None:
    camera = FakeCamera()
    with open_source(source, capture_factory=camera) as src:
        frames = list(itertools.islice(src, 5))
        assert src.kind == "webcam" and src.name == f"camera {int(source)}"
    assert camera.targets == [int(source)]
    assert [f.index for f in frames] == list(range(5))
    assert all(a.timestamp <= b.timestamp for a, b in itertools.pairwise(frames))
    assert_released(src, camera)
    assert src.stats.captured == src.stats.delivered + src.stats.dropped


def test_http_url_is_read_by_opencv(video: Path, http_root: str) -> None:
    url = f"{http_root}/{video.name}"
    with open_source(url, **FAST) as source:
        frames = list(itertools.islice(source, 3))
    assert source.kind == "url" and source.name == f"stream {url}"
    assert all(f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8 for f in frames)
    assert source.stats.captured == source.stats.delivered + source.stats.dropped


def test_dead_http_url_ends_with_source_error(http_root: str) -> None:
    with open_source(f"{http_root}/missing.avi", reopen_attempts=2, **FAST) as source, \
            pytest.raises(SourceError, match=r"missing\.avi failed: no frames after 2 reopen"):
        next(source)
    assert source.stats.reopens == 2  # a bounded number of tries, then the error
    assert not capture_threads()


def test_url_credentials_stay_out_of_names() -> None:
    camera = FakeCamera()
    with open_source("rtsp://admin:secret@10.0.0.5/live", capture_factory=camera) as source:
        next(source)
    assert camera.targets == ["rtsp://admin:secret@10.0.0.5/live"]
    assert "secret" not in source.name and "secret" not in repr(source)


def test_slow_consumer_gets_the_newest_frame_and_drops_are_counted() -> None:
    camera = FakeCamera(delay=0.001)  # ~1000 fps against a consumer at ~50 fps
    seen = []
    with open_source(0, capture_factory=camera) as source:
        for frame in itertools.islice(source, 8):
            seen.append(sequence(frame.image))
            time.sleep(0.02)
            newest_so_far = source.stats.captured - 1
            peek = next(source)  # no backlog: what comes next is at least the newest capture
            assert sequence(peek.image) >= newest_so_far
            seen.append(sequence(peek.image))
    stats = source.stats
    assert seen == sorted(set(seen))  # strictly increasing: never an old frame after a new one
    assert stats.dropped > 0
    assert stats.captured == stats.delivered + stats.dropped
    assert stats.delivered == 16
    assert_released(source, camera)


def test_camera_that_fails_to_open_twice_is_reopened() -> None:
    camera = FakeCamera(fail_opens=2)
    with open_source(0, capture_factory=camera, **FAST) as source:
        frames = list(itertools.islice(source, 3))
    assert len(frames) == 3
    assert source.stats.reopens == 2
    assert len(camera.captures) == 3
    assert_released(source, camera)


def test_camera_that_dies_mid_stream_is_reopened_and_keeps_going() -> None:
    camera = FakeCamera(frames_per_open=4, delay=0.002)
    with open_source(0, capture_factory=camera, reopen_attempts=1, **FAST) as source:
        frames = list(itertools.islice(source, 10))
    # each death gets a fresh set of attempts: one attempt is enough for many deaths
    assert len(frames) == 10
    assert source.stats.reopens >= 2 and len(camera.captures) >= 3
    assert_released(source, camera)


def test_missing_camera_ends_with_one_clear_error_after_bounded_retries() -> None:
    camera = FakeCamera(fail_opens=None)  # never opens, like a bad index
    with open_source(7, capture_factory=camera, **FAST) as source, \
            pytest.raises(SourceError) as error:
        for _ in source:
            pass
    message = str(error.value)
    assert message.startswith("camera 7 failed: no frames after 3 reopen attempts")
    assert "pick another source" in message and "\n" not in message
    assert source.stats.reopens == 3 and len(camera.captures) == 4
    assert_released(source, camera)


def test_read_that_raises_counts_as_a_failure() -> None:
    class Exploding(FakeCapture):
        def read(self) -> tuple[bool, np.ndarray | None]:
            raise cv2.error("driver fell over")

    captures: list[FakeCapture] = []

    def factory(target: int | str) -> Capture:
        captures.append(Exploding(FakeCamera(), opened=True))
        return captures[-1]

    with open_source(0, capture_factory=factory, reopen_attempts=1, **FAST) as source, \
            pytest.raises(SourceError, match="driver fell over"):
        next(source)
    assert len(captures) == 2 and all(c.releases == 1 for c in captures)


def test_capture_is_released_when_the_consumer_raises() -> None:
    camera = FakeCamera()
    with pytest.raises(ZeroDivisionError), open_source(0, capture_factory=camera) as source:
        for _ in source:
            1 / 0  # noqa: B018 - the consumer's own bug
    assert_released(source, camera)


def test_abandoned_source_is_released_when_collected() -> None:
    camera = FakeCamera()
    source = open_source(0, capture_factory=camera)
    for _ in source:
        break
    del source
    gc.collect()
    deadline = time.monotonic() + 5
    while capture_threads() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert camera.all_released and not capture_threads()


def test_close_from_another_thread_ends_a_waiting_consumer() -> None:
    camera = FakeCamera(fail_opens=None)  # never delivers: the consumer would wait
    source = open_source(0, capture_factory=camera, reopen_delay=0.5)
    threading.Timer(0.05, source.close).start()
    assert list(source) == []
    assert_released(source, camera)
