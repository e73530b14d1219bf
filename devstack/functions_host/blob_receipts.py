"""Where a blob trigger keeps what it must remember of each blob version: done, attempts, poisoned.

:class:`ReceiptStore` is the port :class:`~.blob_trigger.BlobTrigger` uses; :func:`receipt_store` picks the adapter
by the trigger's source, as Azure's blob extension does (``BlobListenerFactory``):

* ``LogsAndContainerScan``: :class:`StorageReceipts`, receipt blobs in host storage
  (``azure-webjobs-hosts/blobreceipts/<host id>/Host.Functions.<name>/<etag>/<container>/<blob>``, metadata
  ``Attempts``, ``Incomplete``, ``Poisoned``), as the runtime's ``BlobReceiptManager`` writes them for its scan.
* ``EventGrid``: :class:`LocalReceipts`, a journal in the host's data directory (:mod:`.receipt_journal`) and no
  receipt in storage. Azure writes no receipt for an Event Grid trigger either: its events become messages on the
  host's blob-trigger queue, whose dequeue count drives the poison queue.

The local store cannot see what storage itself forgets. Azure Storage never does, but Azurite restores its last save
(every 5 s) after a ``kill -9``, and a receipt in storage went back with it, together with the function's own
writes, so the version ran again. For the journal to do the same, a done (or poisoned) version counts as done only
once storage has kept a write made after it: every ``CHECKPOINT_SECONDS`` while versions are being settled (and
when the host stops), the host writes the journal's id and last line number into one blob per trigger,
``azure-webjobs-hosts/eventgrid-checkpoints/<host id>/Host.Functions.<name>``, conditional on the ETag of its
previous write. At start, after a failed storage call and when Azurite's access log shows it starting again, the
host reads that blob and reopens the versions settled after the line it names (their last attempt not counted), so
they run again; a checkpoint write whose condition fails (storage lost the previous one) does the same. The
checkpoint is written by the thread that reads the access log, right after reading it, and without the SDK's
retries, so a write never lands on a restarted Azurite before its start line was seen. (Without an access log a
restart shows only as a failed call, which the SDK's retries of the other calls can hide when it is short: the
local stack always passes the log.) A version settled in the last ``CHECKPOINT_SECONDS`` before a ``kill -9`` of
the host therefore runs again after the restart, as one that storage may have lost: the function must be
idempotent per version, as it must be on Azure. The function's own writes must go to the same Azurite as the
checkpoint (the local stack has one) for the checkpoint to vouch for them.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from pathlib import Path
from typing import Protocol

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient

from .host_storage import function_id, hosts_container
from .receipt_journal import DONE, POISONED, ReceiptJournal, Version
from .settings import Connection

logger = logging.getLogger(__name__)

CHECKPOINTS = "eventgrid-checkpoints"
# Azurite saves its metadata every 5 s (LokiJS autosave): a kill -9 of Azurite loses up to 5 s of writes whatever
# this interval, and with a checkpoint as often a kill -9 of the host runs no more versions again than that.
CHECKPOINT_SECONDS = 5.0


class CallOutcome(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"  # to be tried again
    POISONED = "poisoned"  # a message went to the poison queue; not tried again


class ReceiptStore(Protocol):
    def done(self, key: Version) -> bool:
        """Whether the version is known done or poisoned (a cheap look, before queueing it)."""
        ...

    def claim(self, key: Version, new: bool) -> int | None:
        """Before a call: its attempt number, or None when the version is done or poisoned. ``new``: the access
        log showed this version written after the host started following it (no receipt can exist yet)."""
        ...

    def settle(self, key: Version, attempt: int, outcome: CallOutcome) -> None:
        """After a call (or instead of one, for a version poisoned without a call)."""
        ...

    def distrust(self) -> None:
        """Storage failed or restarted: it may have lost writes, so what was remembered of it is checked again."""
        ...

    def keep(self) -> int:
        """Upkeep, called often by the thread that watches storage; returns how many versions must run again."""
        ...

    def close(self) -> None: ...


def receipt_store(
    event_grid: bool, host_storage: Connection, host_id: str, function: str, container: str, state_dir: Path
) -> ReceiptStore:
    if event_grid:
        journal = ReceiptJournal(state_dir / "blobreceipts" / host_id / f"{function_id(function)}.jsonl")
        return LocalReceipts(journal, host_storage, f"{CHECKPOINTS}/{host_id}/{function_id(function)}")
    return StorageReceipts(host_storage, f"blobreceipts/{host_id}/{function_id(function)}/", container)


class StorageReceipts:
    """Receipt blobs in host storage, as the runtime keeps them for a ``LogsAndContainerScan`` trigger.

    A version the access log showed as new (and this host has not called the function for yet) has no receipt:
    it is written once, after the call (complete, or ``Incomplete`` with ``Attempts=1`` when the call failed).
    Any other is claimed before the call (created ``Incomplete`` create-only, or read and rewritten with one
    attempt more) and marked after it. Storage clients are per thread."""

    def __init__(self, host_storage: Connection, prefix: str, container: str) -> None:
        self._connection = host_storage
        self._prefix = prefix
        self._container = container
        self._lock = threading.Lock()
        self._done: set[Version] = set()
        self._tried: set[Version] = set()  # versions this host has called the function for
        self._unclaimed: set[Version] = set()  # called without a receipt (new versions): settle creates it
        self._local = threading.local()
        self._clients: list[ContainerClient] = []

    def receipt_name(self, key: Version) -> str:
        return f"{self._prefix}{key[1].strip(chr(34))}/{self._container}/{key[0]}"

    def done(self, key: Version) -> bool:
        with self._lock:
            return key in self._done

    def claim(self, key: Version, new: bool) -> int | None:
        with self._lock:
            # A version called before (a failed call, or a second log line for it) has a receipt by now, or is
            # claimed as if it had: only a first sighting goes without one.
            if new and key not in self._tried:
                self._tried.add(key)
                self._unclaimed.add(key)
                return 1
        attempt = _claim(self._receipt(key))
        with self._lock:
            if attempt is None:
                self._done.add(key)
                self._tried.discard(key)
            else:
                self._tried.add(key)
        return attempt

    def settle(self, key: Version, attempt: int, outcome: CallOutcome) -> None:
        with self._lock:
            claimed = key not in self._unclaimed
            self._unclaimed.discard(key)
        receipt = self._receipt(key)
        if outcome is CallOutcome.FAILED:
            if not claimed:  # so the retries count towards the poison threshold
                self._record(receipt, {"Incomplete": "true", "Attempts": str(attempt)}, claimed=False)
            return
        metadata = {"Attempts": str(attempt)}
        if outcome is CallOutcome.POISONED:
            metadata["Poisoned"] = "true"
        self._record(receipt, metadata, claimed)
        with self._lock:
            self._done.add(key)
            self._tried.discard(key)

    def distrust(self) -> None:
        # Storage may come back from an earlier state (Azurite killed before it saved): receipts it lost must be
        # looked up again, not trusted from memory.
        with self._lock:
            self._done.clear()

    def keep(self) -> int:
        return 0

    def close(self) -> None:
        with self._lock:
            clients, self._clients = self._clients, []
        for client in clients:
            client.close()

    def _receipt(self, key: Version) -> BlobClient:
        container: ContainerClient | None = getattr(self._local, "container", None)
        if container is None:
            container = hosts_container(self._connection)
            self._local.container = container
            with self._lock:
                self._clients.append(container)
        return container.get_blob_client(self.receipt_name(key))

    def _record(self, receipt: BlobClient, metadata: dict[str, str], claimed: bool) -> None:
        """Writes a receipt's state after a call: the claimed receipt's metadata, or a new receipt create-only."""
        if claimed:
            receipt.set_blob_metadata(metadata)
            return
        try:
            receipt.upload_blob(b"", overwrite=False, metadata=metadata)
        except ResourceExistsError:
            # Only another host on the same storage and host id (not supported) could have written it meanwhile.
            logger.warning("receipt %s existed already; updated", receipt.blob_name)
            receipt.set_blob_metadata(metadata)


def _claim(receipt: BlobClient) -> int | None:
    """Records one more attempt in the receipt before a call and returns its number; None if the receipt says
    done. A receipt is created create-only (one request); an existing one is read first."""
    try:
        receipt.upload_blob(b"", overwrite=False, metadata={"Incomplete": "true", "Attempts": "1"})
        return 1
    except ResourceExistsError:
        pass
    state = receipt.get_blob_properties().metadata or {}
    if state.get("Incomplete") != "true":
        return None
    attempt = int(state.get("Attempts", "0")) + 1
    receipt.upload_blob(b"", overwrite=True, metadata={"Incomplete": "true", "Attempts": str(attempt)})
    return attempt


class LocalReceipts:
    """The journal, trusted as far as the checkpoint in storage says (see the module's docstring)."""

    def __init__(self, journal: ReceiptJournal, host_storage: Connection, checkpoint_name: str) -> None:
        self.journal = journal
        self._connection = host_storage
        self._checkpoint_name = checkpoint_name
        self._container: ContainerClient | None = None  # used by one thread at a time (under _keeping)
        self._checkpoint: BlobClient | None = None
        self._etag: str | None = None  # of the checkpoint as this host last wrote or read it
        self._written = 0  # journal line the checkpoint in storage covers
        self._next_write = 0.0
        self._keeping = threading.Lock()
        self._suspect = threading.Event()  # storage may have lost writes: read the checkpoint before trusting
        self._suspect.set()  # at start: the host may have stopped while storage went back
        self._failing = False

    def done(self, key: Version) -> bool:
        return self.journal.final(key)

    def claim(self, key: Version, new: bool) -> int | None:
        return self.journal.claim(key)

    def settle(self, key: Version, attempt: int, outcome: CallOutcome) -> None:
        if outcome is not CallOutcome.FAILED:  # a failed call is counted by its claim
            self.journal.settle(key, attempt, DONE if outcome is CallOutcome.SUCCEEDED else POISONED)

    def distrust(self) -> None:
        self._suspect.set()

    def keep(self, final: bool = False) -> int:
        if not self._keeping.acquire(blocking=False):
            return 0  # another thread is at it
        reopened = 0
        try:
            if self._suspect.is_set():
                reopened = self._resync()
            seq = self.journal.seq
            if seq > self._written and (final or time.monotonic() >= self._next_write):
                self._next_write = time.monotonic() + CHECKPOINT_SECONDS
                self._write_checkpoint(seq)
            self._failing = False
        except Exception as exc:  # noqa: BLE001 - the caller's thread outlives any storage error
            if not self._failing:  # once per spell of failures: the caller asks again every few ms
                logger.warning("blob receipt checkpoint %s: %s; read again before it is trusted",
                               self._checkpoint_name, exc)  # fmt: skip
            self._failing = True
            self._suspect.set()
        finally:
            self._keeping.release()
        return reopened

    def close(self) -> None:
        try:
            self.keep(final=True)
        finally:
            self.journal.close()
            if self._container is not None:
                self._container.close()

    def _blob(self) -> BlobClient:
        if self._checkpoint is None:
            # No retries: a write the SDK repeated after Azurite came back could cover what it lost before the
            # restart is seen; a failed call marks the checkpoint suspect at once instead (and blocks nothing).
            self._container = hosts_container(self._connection, retry_total=0)
            self._checkpoint = self._container.get_blob_client(self._checkpoint_name)
        return self._checkpoint

    def _resync(self) -> int:
        """Reads the checkpoint and reopens the versions settled after it."""
        self._suspect.clear()  # a failure from here on sets it again
        blob = self._blob()
        try:
            props = blob.get_blob_properties()
            metadata = props.metadata or {}
            same = metadata.get("journal") == self.journal.journal_id
            covered = int(metadata.get("seq", "0")) if same else 0
            self._etag = props.etag
        except ResourceNotFoundError:
            covered, self._etag = 0, None
        reopened = self.journal.reopen_after(covered)
        self._written = covered
        if reopened:
            logger.warning(
                "blob receipts %s: storage holds the checkpoint of line %d; %d version(s) settled after it run again",
                self.journal.path.name, covered, len(reopened),
            )  # fmt: skip
        return len(reopened)

    def _write_checkpoint(self, seq: int) -> None:
        metadata = {"journal": self.journal.journal_id, "seq": str(seq)}
        blob = self._blob()
        try:
            if self._etag is None:
                written = blob.upload_blob(b"", overwrite=False, metadata=metadata)
            else:
                written = blob.upload_blob(
                    b"",
                    overwrite=True,
                    metadata=metadata,
                    etag=self._etag,
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError, ResourceNotFoundError):
            # Not the checkpoint this host wrote last: storage went back (or another host writes it).
            logger.warning("blob receipt checkpoint %s changed in storage; reading it again", self._checkpoint_name)
            self._suspect.set()
            return
        self._etag = str(written["etag"])
        self._written = seq


__all__ = ["CallOutcome", "LocalReceipts", "ReceiptStore", "StorageReceipts", "receipt_store"]
