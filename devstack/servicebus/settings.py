"""Emulator settings, read once from the command line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

DEFAULT_KEY_NAME = "RootManageSharedAccessKey"
DEFAULT_KEY = "SAS_KEY_VALUE"


@dataclass(frozen=True)
class ServerSettings:
    config: Path
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 5673
    key_name: str = DEFAULT_KEY_NAME
    key: str = DEFAULT_KEY
    max_message_size: int = 256 * 1024
    max_links: int = 10_000  # entity and $management links over all connections
    synchronous: str = "NORMAL"
    log_level: str = "INFO"

    def __post_init__(self) -> None:
        if not 0 < self.port < 65536:
            raise ValueError(f"--port: {self.port} is not a TCP port")
        if self.max_message_size < 1024:
            raise ValueError(f"--max-message-size: {self.max_message_size} is below 1024 bytes")
        if self.max_links < 1:
            raise ValueError(f"--max-links: {self.max_links} must be at least 1")
        if self.synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"--sync: {self.synchronous} is not NORMAL or FULL")
        if not self.key:
            raise ValueError("--key: must not be empty")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, required=True, help="entity config (Microsoft emulator Config.json)")
    parser.add_argument("--data", type=Path, required=True, help="folder for the message store")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5673)
    parser.add_argument("--key-name", default=DEFAULT_KEY_NAME, help="SAS key name the tokens must name")
    parser.add_argument("--key", default=DEFAULT_KEY, help="SAS key the tokens must be signed with")
    parser.add_argument("--max-message-size", type=int, default=256 * 1024, help="bytes per message/batch")
    parser.add_argument("--max-links", type=int, default=10_000, help="open entity/$management links, all clients")
    parser.add_argument(
        "--sync", default="NORMAL", choices=("NORMAL", "FULL"),
        help="SQLite synchronous mode: NORMAL survives a process crash, FULL also a power loss",
    )  # fmt: skip
    parser.add_argument("--log-level", default="INFO")


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    return ServerSettings(
        config=args.config, data_dir=args.data, host=args.host, port=args.port, key_name=args.key_name,
        key=args.key, max_message_size=args.max_message_size, max_links=args.max_links, synchronous=args.sync,
        log_level=args.log_level.upper(),
    )  # fmt: skip
