"""Fixtures of the scoring-server tests."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest


@pytest.fixture
def stalled_blob_server() -> Iterator[str]:
    """A loopback HTTP listener that accepts connections and never answers (a blob read that hangs)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/devstoreaccount1/input/stalled.csv?sig=stalled"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
