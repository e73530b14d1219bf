"""The gunicorn settings file of the local azmlinfsrv: loopback bind, and a worker that exits without a last
full collection (the master, which gunicorn also calls ``worker_exit`` in, is left as it is)."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from devstack import gunicorn_loopback


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Nothing frozen before the test, and nothing left frozen after it (the test process's collector as it was)."""
    assert gc.get_freeze_count() == 0
    try:
        yield
    finally:
        gc.unfreeze()


@pytest.mark.usefixtures("unfrozen")
def test_the_exiting_worker_freezes_what_it_loaded() -> None:
    gunicorn_loopback.worker_exit(server=None, worker=SimpleNamespace(pid=os.getpid()))
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("unfrozen")
def test_the_master_reaping_a_worker_freezes_nothing() -> None:
    gunicorn_loopback.worker_exit(server=None, worker=SimpleNamespace(pid=os.getpid() + 1))
    assert gc.get_freeze_count() == 0


def test_the_wildcard_bind_is_moved_to_loopback() -> None:
    settings: dict[str, list[str]] = {"bind": ["0.0.0.0:5001"]}
    cfg = SimpleNamespace(bind=settings["bind"], set=settings.__setitem__)
    gunicorn_loopback.on_starting(SimpleNamespace(cfg=cfg))
    assert settings["bind"] == ["127.0.0.1:5001"]
