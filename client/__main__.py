"""Entry point: ``python -m client`` and the ``asyncinfer`` console script."""

from __future__ import annotations

import sys

from client.adapters import real_adapters
from client.app import run
from client.console import Console


def main() -> None:
    sys.exit(run(sys.argv[1:], Console.system(), real_adapters()))


if __name__ == "__main__":
    main()
