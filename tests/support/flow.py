"""Driving files through a running local stack and judging what comes out; shared by benchmarks and e2e tests.

* :func:`isolated_settings`: a :class:`StackSettings` on free loopback ports (:func:`stack_ports`) under its own
  base dir.
* :class:`OutputWatcher`: lists the output container under a prefix and remembers when each input's output
  or error record was first seen (client-side, so latency figures include the polling interval).
* :class:`ReferenceModel`: the MLflow model loaded in this process; checks a scored CSV row by row.
* :func:`service_pids` / :func:`peak_rss_kib`: the stack's processes and their RSS high-water marks.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from azure.storage.blob import ContainerClient

from devstack.functions_host.blob_listing import ContainerLister
from devstack.ports import free_port
from devstack.stack import PORT_SETTINGS, LocalStack, StackSettings
from shared.blobnames import safe_error_name
from shared.contracts import PREDICTION_COLUMN, PROBABILITY_COLUMN, output_blob_name

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "scoring" / "model"
OUTPUT = "output"
INPUT = "input"
# The service writes the model's probabilities in full; this leaves room for the last bits only.
PROBABILITY_TOLERANCE = 1e-9
_SAS_SIGNATURE = re.compile(r"[?&]sig=[A-Za-z0-9%+/=]{16,}")


def distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


def stack_ports() -> dict[str, int]:
    """A free loopback port for each of the stack's services, by setting name, no two alike."""
    return dict(zip(PORT_SETTINGS, distinct_free_ports(len(PORT_SETTINGS)), strict=True))


def isolated_settings(base_dir: Path, extra: Mapping[str, str] | None = None) -> StackSettings:
    settings = StackSettings(base_dir=base_dir, extra_settings=dict(extra or {}))
    return replace(settings, **stack_ports())  # type: ignore[arg-type]


@dataclass(frozen=True)
class Seen:
    kind: str  # "output" or "error"
    blob: str
    at: float  # time.monotonic() when first listed


@dataclass
class Outcomes:
    """What the output container holds for each input name."""

    outputs: dict[str, Seen] = field(default_factory=dict)
    errors: dict[str, Seen] = field(default_factory=dict)

    def first(self, name: str) -> Seen | None:
        seen = [s for s in (self.outputs.get(name), self.errors.get(name)) if s is not None]
        return min(seen, key=lambda s: s.at) if seen else None

    def both(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n in self.outputs and n in self.errors]

    def missing(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if n not in self.outputs and n not in self.errors]


class OutputWatcher:
    """Polls the output container for the outputs and error records of a known set of input names."""

    def __init__(
        self,
        container: ContainerClient,
        names: Iterable[str],
        prefixes: Iterable[str],
        pending_group: Callable[[str], str] | None = None,
    ) -> None:
        """``pending_group`` (a prefix of an input name, e.g. all but its last digit) narrows each poll to the
        groups of the names still without an outcome, so a poll lists a few blobs instead of every output of
        the phase, and takes a few ms instead of a time that grows with the outputs already written."""
        self.container = container
        self._names = list(names)
        self._by_output = {output_blob_name(n): n for n in self._names}
        self._by_error = {safe_error_name(n): n for n in self._names}
        # Listed with the functions host's lister: the SDK's list_blobs would cost this process about 0.3 ms of
        # CPU per blob on every poll, CPU the stack under test would then not have.
        self._prefixes = sorted(set(prefixes))
        self._pending_group = pending_group
        self.outcomes = Outcomes()
        self.gone: set[str] = set()  # outputs seen once and absent in a later listing
        self.last_listing_s = 0.0

    def _listing_prefixes(self) -> list[str]:
        if self._pending_group is None:
            return self._prefixes
        groups = {self._pending_group(n) for n in self.outcomes.missing(self._names)}
        # an output keeps its input's name; an error record is errors/<input name>.error.json
        return sorted({p for g in groups for p in (output_blob_name(g), f"errors/{g}")})

    def _listed(self, into: Outcomes) -> Outcomes:
        started = time.monotonic()
        for prefix in self._listing_prefixes():
            with contextlib.closing(ContainerLister(self.container, prefix=prefix)) as lister:
                names = [name for name, _ in lister]
            now = time.monotonic()  # after the answer: a blob in it may have been written just before
            for name in names:
                self.saw(name, now, into)
        self.last_listing_s = time.monotonic() - started
        return into

    def saw(self, blob: str, at: float, into: Outcomes | None = None) -> bool:
        """Records output blob ``blob`` as seen at ``at`` (in the history unless ``into`` is given) if it is the
        output or error record of a watched name; True when that name's outcome of its kind was not known yet."""
        outcomes = self.outcomes if into is None else into
        new = False
        if (name := self._by_output.get(blob)) is not None and name not in outcomes.outputs:
            outcomes.outputs[name], new = Seen("output", blob, at), True
        if (name := self._by_error.get(blob)) is not None and name not in outcomes.errors:
            outcomes.errors[name], new = Seen("error", blob, at), True
        return new

    def poll(self) -> Outcomes:
        """Everything seen so far (a blob that disappeared later stays in this history)."""
        return self._listed(self.outcomes)

    def current(self) -> Outcomes:
        """What exists right now (from one listing, which also goes into the history ``poll`` keeps)."""
        now = self._listed(Outcomes())
        for name, seen in now.outputs.items():
            self.outcomes.outputs.setdefault(name, seen)
        for name, seen in now.errors.items():
            self.outcomes.errors.setdefault(name, seen)
        return now

    def pause(self, interval: float) -> float:
        """Seconds to wait before the next poll: ``interval``, or longer when listing has become slow.

        Three times the last listing's time, so watching many outputs keeps to a quarter of the storage
        service's time, which the stack under test needs.
        """
        return max(interval, 3 * self.last_listing_s)

    def wait(self, names: Iterable[str], timeout: float, interval: float = 0.1) -> list[str]:
        """Polls until every name has an outcome or ``timeout`` passes; returns the names still missing."""
        wanted = list(names)
        deadline = time.monotonic() + timeout
        while True:
            missing = self.poll().missing(wanted)
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(self.pause(interval))

    def error_record(self, name: str) -> dict[str, Any]:
        data = self.container.download_blob(safe_error_name(name)).readall()
        record: dict[str, Any] = json.loads(data)
        return record

    def output(self, name: str) -> bytes:
        return bytes(self.container.download_blob(output_blob_name(name)).readall())


@functools.cache
def reference_model() -> ReferenceModel:
    """One :class:`ReferenceModel` per process (loading it takes a second or two)."""
    return ReferenceModel()


class ReferenceModel:
    """The model the service serves, loaded here with MLflow, to check outputs row by row."""

    def __init__(self, model_dir: Path = MODEL_DIR) -> None:
        import mlflow.sklearn

        self.pipeline = mlflow.sklearn.load_model(str(model_dir))
        self.classes = [str(c) for c in self.pipeline.classes_]

    def check_csv(self, source: bytes, scored: bytes) -> list[str]:
        """Problems with ``scored`` as the output for ``source`` (empty when every row matches)."""
        import pandas as pd

        return self.check_rows(pd.read_csv(io.BytesIO(source)), list(csv.DictReader(io.StringIO(scored.decode()))))

    def check_rows(self, frame: Any, rows: Sequence[Mapping[str, Any]]) -> list[str]:
        """Problems with ``rows`` (output rows as dicts) as the scored form of the input ``frame``: same
        customers in the same order, the model's prediction and the probability of that prediction."""
        proba_all = self.pipeline.predict_proba(frame)
        picked = proba_all.argmax(axis=1)
        proba = proba_all[range(len(frame)), picked]
        problems: list[str] = []
        if len(rows) != len(frame):
            return [f"{len(rows)} output rows for {len(frame)} input rows"]
        ids = frame["customerID"].astype(str).tolist()
        for i, (row, p, k) in enumerate(zip(rows, proba, picked, strict=True)):
            want = self.classes[k]
            try:
                got = float(row[PROBABILITY_COLUMN])
            except (KeyError, TypeError, ValueError):
                problems.append(f"row {i + 1}: no probability")
                continue
            if str(row.get("customerID")) != ids[i]:
                problems.append(f"row {i + 1}: customerID {row.get('customerID')!r}, input has {ids[i]!r}")
            if not math.isclose(got, float(p), abs_tol=PROBABILITY_TOLERANCE):
                problems.append(f"row {i + 1}: probability {got}, model says {p:.6f}")
            if row.get(PREDICTION_COLUMN) != want:
                problems.append(f"row {i + 1}: prediction {row.get(PREDICTION_COLUMN)!r}, model says {want!r}")
            if len(problems) >= 5:
                break
        return problems


def service_pids(stack: LocalStack) -> dict[str, int]:
    return {s.name: s.pid for s in stack.statuses() if s.pid is not None}


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (from /proc; gunicorn's workers are children of its master)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def peak_rss_kib(pid: int) -> int | None:
    """VmHWM (peak resident set) of one process in KiB, or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def secrets_in_logs(log_dir: Path, extra: Iterable[str] = ()) -> list[str]:
    """Lines of the stack's logs that show a key, a SAS signature or a connection string (``file:line: what``).

    Azurite's own access log (``azurite.log``, on so the functions host can follow new blobs) records each URL a
    client sent; the stack runs Azurite through ``devstack/azurite_redacted.js``, which blanks SAS signatures out of
    it, so it is held to the same rule as the logs of our own components."""
    from devstack.stack import DEV_KEY, SB_KEY

    needles = {"the Azurite account key": DEV_KEY, "the Service Bus key": SB_KEY, "a connection string": "AccountKey="}
    needles["a Service Bus connection string"] = "SharedAccessKey="
    needles.update({f"configured key #{i}": value for i, value in enumerate(extra) if len(value) >= 8})
    found = []
    for path in sorted(log_dir.rglob("*.log")):
        with path.open(errors="replace") as lines:
            for number, line in enumerate(lines, 1):
                what = [label for label, needle in needles.items() if needle in line]
                if _SAS_SIGNATURE.search(line):
                    what.append("a SAS signature")
                if what:
                    found.append(f"{path.name}:{number}: {', '.join(what)}: {line.strip()[:160]}")
    return found


def cpu_seconds(stack: LocalStack) -> dict[str, float]:
    """User + system CPU seconds used so far by each service's process tree."""
    ticks = os.sysconf("SC_CLK_TCK")
    used = {}
    for name, pid in service_pids(stack).items():
        total = 0
        for member in process_tree(pid):
            try:
                fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime, stime
        used[name] = total / ticks
    return used


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]
