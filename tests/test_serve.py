"""The demo's browser view (--serve): the three endpoints read with an HTTP client, several
viewers at once, viewers that stall or vanish, and Ctrl-C."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import ROOT, read_frames, run_module

from benchmarks.mjpeg import MjpegServer
from demos.serve import MAX_VIEWERS, LiveView, ServeError, parse_address

BOUNDARY = b"--edgecnnframe"


def test_parse_address() -> None:
    assert parse_address("8080") == ("127.0.0.1", 8080)
    assert parse_address("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_address("localhost:0") == ("localhost", 0)
    assert parse_address("[::1]:9000") == ("::1", 9000)
    for bad in ("", "http", "host:", ":80", "99999", "1.2.3.4:-1"):
        with pytest.raises(ServeError, match="expected \\[HOST:\\]PORT"):
            parse_address(bad)


@pytest.fixture
def view() -> Iterator[LiveView]:
    live = LiveView("edgecnn · test")
    live.start("127.0.0.1", 0)
    stop = threading.Event()

    def camera() -> None:  # a stand-in camera loop: a new annotated frame every 20 ms
        index = 0
        while not stop.is_set():
            frame = np.full((120, 160, 3), index % 256, np.uint8)
            live.publish(frame, {"frame": index, "top": [["7", 0.9], ["1", 0.05], ["2", 0.01]]})
            index += 1
            time.sleep(0.02)

    thread = threading.Thread(target=camera, daemon=True)
    thread.start()
    yield live
    stop.set()
    thread.join(5)
    live.stop()


def wait_until(condition: Callable[[], bool], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def read_parts(url: str, count: int) -> list[np.ndarray]:
    """The first ``count`` JPEG frames of an MJPEG stream, decoded."""
    frames = []
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        while len(frames) < count:
            assert response.readline().rstrip() == BOUNDARY
            headers = {}
            while (line := response.readline().strip()):
                key, _, value = line.decode().partition(":")
                headers[key.lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            data = response.read(int(headers["content-length"]))
            response.readline()
            frames.append(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    return frames


def test_the_three_endpoints(view: LiveView) -> None:
    with urllib.request.urlopen(view.url, timeout=10) as response:
        page = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/html")
    assert "stream.mjpg" in page and "predictions" in page and "edgecnn · test" in page
    frames = read_parts(view.url + "stream.mjpg", 3)
    assert all(f is not None and f.shape == (120, 160, 3) for f in frames)
    with urllib.request.urlopen(view.url + "predictions", timeout=10) as response:
        assert response.headers["Content-Type"] == "application/json"
        result = json.loads(response.read())
    assert result["frame"] >= 0 and result["top"][0] == ["7", 0.9]
    with pytest.raises(urllib.error.HTTPError) as missing:
        urllib.request.urlopen(view.url + "nothing", timeout=10)
    assert missing.value.code == 404


def test_several_viewers_at_once_and_a_limit(view: LiveView) -> None:
    results: list[list[np.ndarray]] = []
    threads = [threading.Thread(target=lambda: results.append(
        read_parts(view.url + "stream.mjpg", 5))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 4 and all(len(frames) == 5 for frames in results)
    wait_until(lambda: not view.watched)  # each left viewer is noticed at its next frame
    # at the limit, one more viewer is turned away rather than starving the device
    held = [urllib.request.urlopen(view.url + "stream.mjpg", timeout=10)
            for _ in range(MAX_VIEWERS)]
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(view.url + "stream.mjpg", timeout=10)
        assert refused.value.code == 503
    finally:
        for response in held:
            response.close()


def test_stalled_and_vanished_viewers_never_block_the_camera_loop() -> None:
    live = LiveView("stall")
    live.start("127.0.0.1", 0)
    host, port = live.url.split("//")[1].rstrip("/").split(":")
    stalled = socket.create_connection((host, int(port)))
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")  # then never reads
    vanished = socket.create_connection((host, int(port)))
    vanished.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: live.watched)
    vanished.close()
    noise = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    published = []

    def camera() -> None:  # large, incompressible frames fill the stalled socket quickly
        for index in range(300):
            live.publish(noise, {"frame": index})
            published.append(index)

    thread = threading.Thread(target=camera, daemon=True)
    thread.start()
    thread.join(60)
    try:
        assert not thread.is_alive() and len(published) == 300
        with urllib.request.urlopen(live.url + "predictions", timeout=10) as response:
            assert json.loads(response.read())["frame"] == 299  # the server still answers
    finally:
        live.stop()
        stalled.close()


@pytest.mark.slow
def test_webcam_serve_end_to_end_and_ctrl_c(exported_bundle: Path, tmp_path: Path) -> None:
    """The demo on an IP camera that never ends (a looping MJPEG stream at 15 fps, so a
    slow machine cannot reach the end first), read by an HTTP client while it runs, then
    stopped with SIGINT while a viewer is still connected."""
    clip = tmp_path / "clip.avi"
    made = run_module("demos.make_clip", "--bundle", str(exported_bundle), "--out", str(clip),
                      "--digits", "6", "--hold", "2", "--seed", "5")
    assert made.returncode == 0, made.stderr
    jpegs = [cv2.imencode(".jpg", frame)[1].tobytes() for frame in read_frames(clip)]
    with contextlib.ExitStack() as stack:
        camera = stack.enter_context(MjpegServer(jpegs, fps=15))
        process = subprocess.Popen(
            [sys.executable, "-m", "demos.webcam", "--model",
             str(exported_bundle / "model.int8.tflite"), "--source", camera.url, "--headless",
             "--serve", "127.0.0.1:0"], cwd=ROOT, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
            # A test runner started in the background (CI, `cmd &` in a script) ignores
            # SIGINT, and so would the demo: give it the terminal's default, as a user has.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        err = _watch_then_interrupt(process)
    assert process.returncode == 130, err
    assert "Traceback" not in err and err.strip() == "webcam: interrupted"


def _watch_then_interrupt(process: subprocess.Popen) -> str:
    """Read the demo's page endpoints while it runs, then SIGINT it; its stderr."""
    try:
        line = ""
        while "serving http://" not in line:
            line = process.stdout.readline()
            assert line or process.poll() is None, process.stderr.read()
        url = line.split("serving ")[1].split()[0]
        assert url.startswith("http://127.0.0.1:")
        frames = read_parts(url + "stream.mjpg", 2)
        assert frames[0].shape == (480, 640, 3)
        with urllib.request.urlopen(url + "predictions", timeout=10) as response:
            result = json.loads(response.read())
        assert set(result) >= {"frame", "label", "probability", "top", "ms", "fps"}
        assert result["label"] in [*"0123456789", None]
        viewer = urllib.request.urlopen(url + "stream.mjpg", timeout=10)  # still watching
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
        viewer.close()
    finally:
        if process.poll() is None:
            process.kill()
    return err
