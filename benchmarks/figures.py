"""Where every benchmark keeps its figures: ``benchmarks/results/<name>.json``, with the machine they ran on."""

from __future__ import annotations

import json
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"


def stamp(figures: dict[str, Any]) -> dict[str, Any]:
    """``figures`` with the machine (CPUs, Python, load average now) and the time of measuring added."""
    figures["machine"] = {"cpus": os.cpu_count(), "python": platform.python_version(), "load_avg": os.getloadavg()}
    figures["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    return figures


def save(figures: dict[str, Any], path: Path) -> None:
    """Writes ``figures`` to ``path`` as indented JSON (the folder created first) and says where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(f"written to {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
