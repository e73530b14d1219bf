"""Runs one of Microsoft's azure-servicebus samples against the emulator: `python samplerun.py SAMPLE.py`.

The sample's source runs as published except for where it connects: a `ServiceBusClient(...)` or
`ServiceBusAdministrationClient(...)` built from the namespace and a credential (`DefaultAzureCredential`)
is built with `.from_connection_string(os.environ["SERVICEBUS_CONNECTION_STR"])` instead, keeping its other
keyword arguments. That is the one thing an emulator cannot take from a sample: the SDK reaches a namespace
given by name over TLS on port 5671 trusting only public CAs, with an Entra ID token.

`SAMPLE_TIME_SCALE=k` makes every sleep in the process (`time.sleep`, `asyncio.sleep`: the sample's and the
SDK's) last 1/k as long, so a sample that waits 100 s runs in 10 s with every wait in the same proportion to
the others. The test gives such a sample a lock duration cut by the same factor or more, so its waits still
outlast the lock and lock renewal is still what keeps its messages.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

CLIENT_RE = re.compile(
    r"(?P<cls>ServiceBusClient|ServiceBusAdministrationClient)\(\s*"
    r"(?:fully_qualified_namespace=)?(?:FULLY_QUALIFIED_NAMESPACE|fully_qualified_namespace)\s*,\s*"
    r"(?:credential=)?(?:credential|DefaultAzureCredential\(\))\s*(?P<end>[,)])"
)
CONNECTION = 'from_connection_string(os.environ["SERVICEBUS_CONNECTION_STR"]'


def connect_to_emulator(source: str) -> tuple[str, int]:
    """The source with its namespace+credential clients built from the connection string, and how many."""
    return CLIENT_RE.subn(lambda m: f"{m['cls']}.{CONNECTION}{m['end']}", source)


def _scale_sleeps(factor: float) -> None:
    real_sleep, real_async_sleep = time.sleep, asyncio.sleep

    def sleep(seconds: float) -> None:
        real_sleep(seconds / factor)

    async def async_sleep(seconds: float, result: Any = None) -> Any:
        return await real_async_sleep(seconds / factor, result)

    time.sleep = sleep  # type: ignore[assignment]
    asyncio.sleep = async_sleep  # type: ignore[assignment]


def _report_renewal_failures() -> None:
    """The SDK's lock renewer logs why it stopped renewing only at debug level: put those lines in the sample's
    output, so a lock lost in a sample says why."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    for name in ("azure.servicebus._common.auto_lock_renewer", "azure.servicebus.aio._async_auto_lock_renewer"):
        renewer = logging.getLogger(name)
        renewer.setLevel(logging.DEBUG)
        renewer.addHandler(handler)
        renewer.addFilter(lambda record: "Failed" in record.getMessage() or record.levelno > logging.DEBUG)


def main(path: str) -> None:
    _report_renewal_failures()
    sample = str(Path(path).resolve())
    source, _count = connect_to_emulator(Path(sample).read_text(encoding="utf-8"))
    factor = float(os.environ.get("SAMPLE_TIME_SCALE", "1"))
    if factor != 1:
        _scale_sleeps(factor)
    sys.argv = [sample]
    sys.path.insert(0, str(Path(sample).parent))
    exec(compile(source, sample, "exec"), {"__name__": "__main__", "__file__": sample})


if __name__ == "__main__":
    main(sys.argv[1])
