"""The streams a command writes to, and whether each is a terminal."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import Any, TextIO


@dataclass
class Console:
    out: TextIO
    err: TextIO
    stdin: TextIO
    err_is_tty: bool = False
    out_is_tty: bool = False
    stdin_is_tty: bool = False

    @classmethod
    def system(cls) -> Console:
        return cls(sys.stdout, sys.stderr, sys.stdin, sys.stderr.isatty(), sys.stdout.isatty(), sys.stdin.isatty())

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def print_json(self, document: Any) -> None:
        self.print(json.dumps(document, indent=2, ensure_ascii=False, default=str))
