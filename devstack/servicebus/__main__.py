"""Command line: `python -m devstack.servicebus --config ... --port ... --data ...` and `... stats --data DIR`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from types import FrameType

from devstack.servicebus import tls
from devstack.servicebus.admin import Admin
from devstack.servicebus.amqp import AmqpServer
from devstack.servicebus.broker import Broker
from devstack.servicebus.config import ConfigError, load_config
from devstack.servicebus.https import AdminServer
from devstack.servicebus.ioloop import IoLoop
from devstack.servicebus.opcounts import read_operations
from devstack.servicebus.settings import ServerSettings, add_server_arguments, settings_from_args
from devstack.servicebus.store import Store, read_counts

logger = logging.getLogger("devstack.servicebus")


def serve(settings: ServerSettings) -> int:
    config = load_config(settings.config)
    store = Store(settings.data_dir, settings.synchronous)
    broker = Broker(config, store)
    admin = Admin(broker, config.name)
    if admin.load():
        logger.info("applied the entities created, changed or deleted at runtime (%s)", settings.data_dir)
    store.flush()
    recovered = broker.recover()
    if recovered:
        logger.info("recovered %s stored messages from %s", recovered, settings.data_dir)
    context = tls.server_context(settings.data_dir, settings.host)

    loop = IoLoop(AmqpServer(broker, settings), settings.host, settings.port)
    loop.on_other = AdminServer(loop, admin, context, settings.key_name, settings.key).serve

    def stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("signal %s: shutting down", signum)
        loop.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        loop.listen()
        print(
            f"servicebus management API on https://{settings.host}:{settings.port}"
            f" (CA certificate {tls.ca_path(settings.data_dir)})",
            flush=True,
        )
        print(
            f"servicebus emulator ready on amqp://{settings.host}:{settings.port} ({broker.entity_count} entities)",
            flush=True,
        )
        loop.run()
    finally:
        store.flush()
        store.close()
    logger.info("servicebus emulator stopped")
    return 0


def stats(data_dir: Path) -> int:
    try:
        counts = read_counts(data_dir)
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{'entity':<50} {'active':>8} {'scheduled':>10} {'deferred':>9} {'dead-lettered':>14}")
    for entity, c in counts.items():
        print(f"{entity:<50} {c.active:>8} {c.scheduled:>10} {c.deferred:>9} {c.dead_lettered:>14}")
    operations = read_operations(data_dir)
    if operations:
        print("operations served since the emulator started:")
        for kind, count in operations.items():
            print(f"  {kind:<48} {count:>8}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["stats"]:
        parser = argparse.ArgumentParser(prog="python -m devstack.servicebus stats")
        parser.add_argument("--data", type=Path, required=True)
        return stats(parser.parse_args(argv[1:]).data)
    parser = argparse.ArgumentParser(prog="python -m devstack.servicebus", description=__doc__)
    add_server_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if logging.getLogger().level > logging.DEBUG:
        # proton logs every accepted connection (INFO) and every client that vanished mid-write (ERROR);
        # the emulator reports what matters itself.
        logging.getLogger("proton").setLevel(logging.CRITICAL)
    try:
        settings = settings_from_args(args)
        return serve(settings)
    except (ConfigError, ValueError, OSError) as exc:
        print(f"servicebus emulator: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
