"""CLI: ``python -m devstack.functions_host [--script-root DIR] [--port 7071] [--host 127.0.0.1] ...``.

Prints one readiness line on stdout once the app is indexed and the HTTP server listens; logs go to stderr.
Exits with status 0 on SIGTERM/SIGINT after a graceful stop, and 2 when the app cannot be loaded.
"""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
import threading
from pathlib import Path
from types import FrameType

from shared.telemetry import logs

from .host import FunctionsHost, HostOptions
from .indexing import IndexingError
from .settings import SettingsError

logger = logging.getLogger("devstack.functions_host")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.functions_host", description=__doc__)
    parser.add_argument("--script-root", type=Path, default=Path("."), help="folder with function_app.py")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (0 picks a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address")
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".devstack") / "functions-host",
        help="where the host key and the EventGrid blob triggers' receipts are kept",
    )
    parser.add_argument(
        "--blob-poll-interval", type=float, default=2.0, help="seconds between container listings without an access log"
    )
    parser.add_argument(
        "--blob-scan-interval", type=float, default=30.0,
        help="seconds between the safety-net listings of a container whose writes are read from an access log",
    )  # fmt: skip
    parser.add_argument(
        "--storage-access-log", action="append", default=[], type=_access_log, metavar="BLOB_URL=PATH",
        help="the access log (morgan common format, as Azurite writes it) of the blob service at BLOB_URL; "
        "blob triggers on that service follow it for new blobs (repeatable)",
    )  # fmt: skip
    parser.add_argument("--shutdown-grace", type=float, default=10.0, help="seconds running invocations get to end")
    return parser.parse_args(argv)


def _access_log(value: str) -> tuple[str, Path]:
    url, equals, path = value.partition("=")
    if not equals or not url.startswith(("http://", "https://")) or not path:
        raise argparse.ArgumentTypeError(
            f"expected BLOB_URL=PATH (e.g. http://127.0.0.1:10000/devstoreaccount1=azurite.log), got {value!r}"
        )
    return url.rstrip("/"), Path(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    level = getattr(logging, str(args.log_level).upper(), None)
    if not isinstance(level, int):
        print(f"unknown --log-level {args.log_level}", file=sys.stderr)
        return 2
    # Every line carries the trace id and the request id it was written under (shared.telemetry.logs).
    logs.install()
    logging.basicConfig(level=level, format=logs.LOG_FORMAT, stream=sys.stderr)
    if level > logging.DEBUG:
        # The SDKs log every HTTP request and AMQP frame at INFO.
        logging.getLogger("azure").setLevel(logging.WARNING)
    options = HostOptions(
        script_root=args.script_root,
        host=args.host,
        port=args.port,
        data_dir=args.data_dir,
        blob_poll_interval=args.blob_poll_interval,
        blob_scan_interval=args.blob_scan_interval,
        storage_access_logs=tuple(args.storage_access_log),
        shutdown_grace=args.shutdown_grace,
    )
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        logger.info("received signal %s", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host = FunctionsHost(options)
    try:
        host.start()
    except (IndexingError, SettingsError, ValueError, OSError) as exc:
        logger.error("functions host cannot start: %s", exc)
        host.stop()
        return 2
    # The modules and objects of start-up live as long as the process: frozen, the collector no longer goes
    # through them in each full collection (about 90 ms each, every 100 small files of a burst, before).
    gc.freeze()
    print(host.ready_line(), flush=True)
    while not stop.wait(1.0):
        pass
    host.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
