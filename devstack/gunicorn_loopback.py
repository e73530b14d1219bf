"""Gunicorn settings file that keeps ``azmlinfsrv`` on loopback and lets its worker exit promptly.

The AML inference server hard-codes ``-b 0.0.0.0:<port>`` on gunicorn's command line, which outranks every
other way of setting the address. Gunicorn's ``on_starting`` hook runs before the listening sockets are
created, so it can swap the wildcard address for 127.0.0.1. Start the server with the environment
variable ``GUNICORN_CMD_ARGS`` set to :data:`CMD_ARGS`.

A stopping worker's interpreter runs a last full garbage collection over everything it loaded (MLflow,
scikit-learn, pandas, the model), which took 3 to 5 s per stop on a busy machine; ``worker_exit`` freezes
those objects first, so a SIGTERM ends the server in under a second. Gunicorn calls the hook after the worker
has stopped serving; ``atexit`` handlers still run, only that last collection skips the frozen objects.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

WILDCARD = "0.0.0.0"
LOOPBACK = "127.0.0.1"
CMD_ARGS = f"--config {Path(__file__).resolve()}"

# One fixed per-user control socket would be shared by two servers side by side (gunicorn 23+).
control_socket_disable = True


def on_starting(server: Any) -> None:
    binds = [address.replace(WILDCARD, LOOPBACK, 1) for address in server.cfg.bind]
    server.cfg.set("bind", binds)


def worker_exit(server: Any, worker: Any) -> None:
    # Gunicorn also calls this in the master when it reaps a worker; only the exiting worker skips the collection.
    if os.getpid() == worker.pid:
        gc.freeze()
