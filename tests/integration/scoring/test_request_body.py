"""scoring.service.body under a real gunicorn server: the one-pass read returns exactly the bytes sent."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from devstack.ports import LOOPBACK, free_port

REPO = Path(__file__).resolve().parents[3]
GUNICORN = Path(sys.executable).with_name("gunicorn")


@pytest.fixture(scope="module")
def echo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log_path = tmp_path_factory.mktemp("gunicorn") / "gunicorn.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [str(GUNICORN), "--bind", f"{LOOPBACK}:{port}", "--workers", "1",
             "tests.integration.scoring.body_echo_app:app"],
            cwd=REPO, env={**os.environ, "GUNICORN_CMD_ARGS": ""}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://{LOOPBACK}:{port}/"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(url, timeout=2)
                break
            except requests.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"gunicorn did not start:\n{log_path.read_text()}")
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


# Around gunicorn's 8 KiB socket chunk (the first one also holds the request head) and the larger reads.
@pytest.mark.parametrize("size", [1, 100, 8191, 8192, 8193, 262_144, 262_145, 1_500_000])
def test_a_length_body_is_read_in_one_pass_byte_for_byte(echo_url: str, size: int) -> None:
    data = os.urandom(size)
    answer = requests.post(echo_url, data=data, timeout=30).json()
    assert answer == {
        "fast": True,
        "length": size,
        "sha256": hashlib.sha256(data).hexdigest(),
        "left_in_stream": 0,
    }


def test_an_empty_body_is_empty(echo_url: str) -> None:
    answer = requests.post(echo_url, data=b"", timeout=30).json()
    assert (answer["fast"], answer["length"], answer["left_in_stream"]) == (True, 0, 0)


def test_a_chunked_body_goes_the_general_way_with_the_same_bytes(echo_url: str) -> None:
    parts = [os.urandom(50_000) for _ in range(5)]
    answer = requests.post(echo_url, data=iter(parts), timeout=30).json()  # Transfer-Encoding: chunked
    data = b"".join(parts)
    assert answer["fast"] is False
    assert (answer["length"], answer["sha256"]) == (len(data), hashlib.sha256(data).hexdigest())
