"""Blob trigger: finds new blobs in a container and runs the function once per blob ETag.

Finding them: when the host is given the storage service's access log (``--storage-access-log``, Azurite's
own log; :mod:`.access_log`), the trigger follows that log and looks up each blob written into its container
at once, and lists the whole container only at start and every ``--blob-scan-interval`` seconds as a safety
net for anything the log missed; the time to find a blob then does not grow with the container. Without a log it
lists the container every ``--blob-poll-interval`` seconds (and pauses twice as long as a listing took).
A trigger with ``source`` EventGrid runs only for blobs last modified after it first started against this host
storage (its subscription marker, below: the local counterpart of the Event Grid subscription), since Event Grid
never reports blobs written before its subscription existed; LogsAndContainerScan runs for every blob.

What the trigger remembers of each version (done, attempts, poisoned) is kept where Azure keeps it
(:mod:`.blob_receipts`): for LogsAndContainerScan, a receipt blob
``azure-webjobs-hosts/blobreceipts/<host id>/Host.Functions.<name>/<etag>/<container>/<blob>`` in host storage
(metadata ``Attempts``, with ``Incomplete`` while the blob is not done, ``Poisoned``), as the runtime's scan writes
it; for EventGrid, no receipt in storage (Azure writes none: its events go through the host's blob-trigger queue,
whose dequeue count drives the poison queue) but a journal in the host's data directory (:mod:`.receipt_journal`),
trusted as far as a checkpoint blob in storage says, so that a version whose writes Azurite lost runs again. The
subscription marker (``azure-webjobs-hosts/eventgrid-subscriptions/<host id>/Host.Functions.<name>``) stays in
storage. Both survive restarts. A failed blob is retried shortly after; after ``poisonBlobThreshold`` failed
attempts (host.json ``extensions.blobs``, else ``extensions.queues.maxDequeueCount``, default 5) a message goes to
queue ``webjobs-blobtrigger-poison`` in the documented shape and the blob is not tried again until it changes.
Every call is counted as an attempt before it starts, so a call the host never finished (``kill -9``) counts too:
a version claimed more often than the threshold goes to poison without another call, as the runtime's queue
processor does with a message dequeued more often than ``maxDequeueCount``.

What a ``kill -9`` of the host means. With receipts in storage, a blob version the access log shows is new when it
was last modified after this host started following the log (Azurite may log a write after answering it, so a line
alone proves nothing) and this host has not called the function for it yet: no receipt can exist for it, so the
function runs at once and the receipt is written once, after the call (complete, or ``Incomplete`` with
``Attempts=1`` when it failed, so the retries count towards the poison threshold). Every other version (found by a
listing, or tried again) has its receipt claimed before the call (created ``Incomplete`` create-only, or read and
rewritten with one attempt more, or skipped when complete or poisoned) and marked complete after it. A host killed
during the call of a new version leaves no receipt; one killed during another call leaves it incomplete; either way
the restarted host's first listing runs the version again. With the journal, the claim is a local line written
before each call, so a killed call is an attempt claimed and not settled: it runs again after the restart. Azure's
host runs such a blob again too (its queue message becomes visible again). The function must therefore be
idempotent per blob version, as on Azure; ``submit_blob`` is, through the request ledger keyed by the blob's ETag.

Round trips per new blob version found through the log: with receipts in storage one, the receipt write; with the
journal none, beside a checkpoint write every five seconds while versions are settled. The local stack's Azurite
logs each answer's ETag and Last-Modified (``azurite_redacted.js``), so the line names the version written and it
is keyed by it without asking for the blob's properties; an SDK-type parameter gets a reference and the
function reads what it needs. A function that takes the content (``InputStream``/``bytes``) costs a read of the
properties (for its metadata; a version replaced since is skipped, its successor has its own line) and the
download, pinned to that ETag. A line without the version (Azurite run without the wrapper) costs the properties
read it always did. A version replaced within the ~50 ms the follower reads at once is taken only in its last
form; one replaced later still runs, as Event Grid reports each write (the function reads the blob as it is
then, and is idempotent per version). A version found by a listing costs, with receipts in storage, the claim and
the completion, plus a read of the receipt when it exists. Azure's host does more for the same guarantee: its scan
path reads the blob's properties, reads the receipt, creates it, leases it, reads it again, enqueues a message,
reads and sets the receipt's metadata and releases the lease, then reads the blob's properties again before the
call (``BlobTriggerExecutor``, ``BlobReceiptManager`` and ``BlobQueueTriggerExecutor`` of the WebJobs storage
extension). It needs the lease because several instances scan; this host is one process.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobProperties, BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from . import clients
from .access_log import AccessLogFollower, BlobWrite
from .blob_binding import SdkTypeArguments, content_argument, reference, trigger_metadata
from .blob_listing import LARGEST_PAGE, PAGE_SIZE, ContainerLister, bare_etag
from .blob_receipts import CallOutcome, receipt_store
from .host_storage import function_id, hosts_container
from .indexing import FunctionSpec
from .invoker import Invoker
from .servicebus_output import ServiceBusOutputs
from .settings import Connection

logger = logging.getLogger(__name__)

POISON_QUEUE = "webjobs-blobtrigger-poison"
_DOWNLOAD_CHUNK = 4 * 1024 * 1024


# host storage blobs that record when an Event Grid-source trigger first ran (see the module's docstring)
SUBSCRIPTIONS = "eventgrid-subscriptions"
# The access log is read as soon as it is written to (inotify), else every _FOLLOW_SECONDS; while Azurite is busy
# it is written to by every request, so it is read at most every _FOLLOW_MIN_SECONDS.
_FOLLOW_SECONDS = 0.05
_FOLLOW_MIN_SECONDS = 0.01
_TROUBLE_CHECK_SECONDS = 0.2  # how soon the listing thread notices a failed storage call of another thread
_FRESH_SECONDS = 1.0  # properties read this recently are trusted by the worker without reading them again
_QUEUED, _DONE, _BUSY = "queued", "done", "busy"


@dataclass(frozen=True)
class BlobTriggerOptions:
    poll_interval: float = 2.0
    max_dequeue_count: int = 5
    parallelism: int = 8
    base64_messages: bool = True
    # With an access log: seconds between the safety-net listings (the first runs at start).
    scan_interval: float = 30.0
    # blob service URL (e.g. http://127.0.0.1:10000/devstoreaccount1) -> that service's access log
    access_logs: Mapping[str, Path] = field(default_factory=dict)
    # the host's data directory: an EventGrid-source trigger keeps its receipts there (.blob_receipts)
    state_dir: Path = Path(".devstack") / "functions-host"


@dataclass(frozen=True)
class _Work:
    key: tuple[str, str]  # blob name, ETag
    props: BlobProperties | None  # the blob's properties when the trigger has just read them
    read_at: float
    new: bool = False  # a version the access log showed: it has no receipt yet (see the module's docstring)


def compile_path(path: str) -> tuple[str, re.Pattern[str]]:
    """``container/{name}.csv`` -> ("container", pattern over blob names)."""
    container, _, blob_pattern = path.partition("/")
    if not container or "{" in container:
        raise ValueError(f"blob trigger path '{path}' must start with a literal container name")
    regex, position = "", 0
    for match in re.finditer(r"\{([^{}]+)\}", blob_pattern):
        regex += re.escape(blob_pattern[position : match.start()])
        regex += f"(?P<{match.group(1)}>.+)"
        position = match.end()
    regex += re.escape(blob_pattern[position:])
    return container, re.compile(regex if blob_pattern else ".+")


def blob_properties_dict(props: BlobProperties) -> dict[str, Any]:
    """The subset of the runtime's ``BlobProperties`` (PascalCase, as the host serialises it) we can fill."""
    settings = props.content_settings
    md5 = settings.content_md5 if settings else None
    blob_type = _blob_type(props)
    return {
        "ContentLength": props.size,
        "ContentType": settings.content_type if settings else None,
        "ContentEncoding": settings.content_encoding if settings else None,
        "ContentLanguage": settings.content_language if settings else None,
        "ContentDisposition": settings.content_disposition if settings else None,
        "CacheControl": settings.cache_control if settings else None,
        "ContentHash": base64.b64encode(bytes(md5)).decode() if md5 else None,
        "ETag": props.etag,
        "LastModified": props.last_modified.isoformat() if props.last_modified else None,
        "CreatedOn": props.creation_time.isoformat() if props.creation_time else None,
        "BlobType": blob_type.replace("Blob", "") if blob_type.endswith("Blob") else blob_type,
        "AccessTier": props.blob_tier,
    }


class BlobTrigger:
    def __init__(
        self,
        spec: FunctionSpec,
        invoker: Invoker,
        stop: threading.Event,
        host_storage: Connection,
        host_id: str,
        options: BlobTriggerOptions,
    ) -> None:
        self.spec = spec
        self._invoker = invoker
        self._stop = stop
        self._host_storage = host_storage
        self._host_id = host_id
        self._data = spec.connection(spec.trigger)
        self._options = options
        self._sdk_types = SdkTypeArguments()
        self.container, self._pattern = compile_path(str(spec.trigger["path"]))
        self.event_grid = str(spec.trigger.get("source", "")).lower() == "eventgrid"
        self.receipts = receipt_store(self.event_grid, host_storage, host_id, spec.name, self.container,
                                      options.state_dir)  # fmt: skip
        self._work: queue.Queue[_Work] = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight: set[tuple[str, str]] = set()
        self._following_since: datetime | None = None  # when the access log started to be followed
        self._retries: dict[str, float] = {}  # blob name -> when to look it up again (access-log mode)
        self._trouble = False  # a storage call failed since the last listing: list again soon
        self._relist = False  # versions to run again (receipts.keep): list again soon
        self._follower: AccessLogFollower | None = None
        self._subscribed_at: datetime | None = None  # EventGrid source: see _subscription_start
        self._missing_logged = False
        self._threads = [threading.Thread(target=self._scan_loop, name=f"blobscan-{spec.name}", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work_loop, name=f"blob-{spec.name}-{i}", daemon=True)
            for i in range(max(1, options.parallelism))
        ]

    def start(self) -> None:
        # What storage holds is checked before the first listing, which then finds every version to run again.
        self.receipts.keep()
        # Made before the first listing starts, so a blob written while it runs is in the log or in the listing.
        self._follower = self._find_follower()
        self._following_since = datetime.now(UTC)
        if self._follower is not None:
            follow = threading.Thread(
                target=self._follow_loop, args=(self._follower,), name=f"bloblog-{self.spec.name}", daemon=True
            )
            self._threads.append(follow)
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        self.receipts.close()

    # -- finding blobs ----------------------------------------------------------------------------------------
    def _scan_loop(self) -> None:
        """Full listings: at start, then every ``scan_interval`` while a log is followed, else back to back."""
        service = clients.blob_service(self._data)
        listing = ContainerLister(service.get_container_client(self.container))
        hosts = hosts_container(self._host_storage)
        follower = self._follower
        next_listing = 0.0
        try:
            while not self._stop.is_set():
                following = follower is not None and follower.available()
                if not following:
                    self._keep_receipts()  # else the follow thread does, as it sees Azurite restart first
                with self._lock:
                    trouble, self._trouble = self._trouble, False
                    relist, self._relist = self._relist, False
                if trouble:
                    # Storage that failed may come back from an earlier state (Azurite killed before it saved
                    # its metadata): what it lost must be looked up again, not trusted from memory.
                    self.receipts.distrust()
                if trouble or relist:
                    next_listing = min(next_listing, time.monotonic() + self._options.poll_interval)
                if time.monotonic() >= next_listing:
                    # A safety-net listing is in no hurry: it leaves half of the storage service to the files, in
                    # the fewest requests. The first listing, or one after trouble, may find blobs to run at once.
                    safety_net = following and not (trouble or relist) and next_listing > 0
                    listing.pause_ratio = 1.0 if following else 0.0
                    listing.page_size = LARGEST_PAGE if safety_net else PAGE_SIZE
                    started = time.monotonic()
                    queued = self._list(listing, hosts)
                    took = time.monotonic() - started
                    if queued and following and next_listing:
                        logger.info(
                            "blob trigger '%s': the safety-net listing queued %d blob(s) not (yet) seen in the log",
                            self.spec.name, queued,
                        )  # fmt: skip
                    # A big container makes each listing slow: without a log, pause twice as long as it took,
                    # so listing takes at most a third of a core (and of the storage service) whatever the size.
                    slow = following and queued is not None
                    next_listing = time.monotonic() + (
                        self._options.scan_interval if slow else max(self._options.poll_interval, 2 * took)
                    )
                self._stop.wait(max(0.0, min(next_listing - time.monotonic(), _TROUBLE_CHECK_SECONDS)))
        finally:
            listing.close()
            service.close()
            hosts.close()

    def _follow_loop(self, follower: AccessLogFollower) -> None:
        """Blobs written into the container, read from the access log as they come (beside the listings, so a
        long listing holds none of them up), and blobs to try again."""
        service = clients.blob_service(self._data)
        hosts = hosts_container(self._host_storage)
        read_at = 0.0
        try:
            while not self._stop.is_set():
                follower.wait(_FOLLOW_SECONDS)
                if self._stop.wait(max(0.0, read_at + _FOLLOW_MIN_SECONDS - time.monotonic())):
                    break
                read_at = time.monotonic()
                if not follower.available():
                    with self._lock:
                        self._retries.clear()  # the listings, back to back without a log, see them
                    continue
                writes = follower.new_blobs()
                if follower.restarted():
                    # Azurite came back from its last save: receipts written since may be gone with it, even
                    # though no call of this host failed while it was down. See _scan_loop.
                    logger.warning("blob trigger '%s': storage restarted; listing again", self.spec.name)
                    self.receipts.distrust()
                    with self._lock:
                        self._trouble = True
                # Right after reading the log, before any storage call that could outlast a restart of Azurite:
                # a checkpoint is written only while the log shows none since (.blob_receipts).
                self._keep_receipts()
                for write in writes:
                    self._logged(service, hosts, write)
                self._retry_due(service, hosts)
        finally:
            follower.close()
            service.close()
            hosts.close()

    def _find_follower(self) -> AccessLogFollower | None:
        with clients.blob_service(self._data) as service:
            wanted = str(service.url).rstrip("/")
        for url, path in self._options.access_logs.items():
            if url.rstrip("/") == wanted:
                logger.info(
                    "blob trigger '%s': follows %s for writes into '%s'; lists the container every %g s",
                    self.spec.name, path, self.container, self._options.scan_interval,
                )  # fmt: skip
                return AccessLogFollower(path, urlsplit(wanted).path, [self.container])
        logger.info(
            "blob trigger '%s': no access log for %s; lists '%s' every %g s or more",
            self.spec.name, wanted, self.container, self._options.poll_interval,
        )  # fmt: skip
        return None

    def _list(self, listing: ContainerLister, hosts: ContainerClient) -> int | None:
        """One full listing; the number of blobs it queued, None when it failed."""
        try:
            if self.event_grid and listing.modified_since is None:
                listing.modified_since = self._subscription_start(hosts)
            queued = self._scan(listing)
        except ResourceNotFoundError:
            if not self._missing_logged:
                logger.warning("blob trigger '%s': container '%s' does not exist yet", self.spec.name, self.container)
                self._missing_logged = True
            return None
        except Exception as exc:  # noqa: BLE001 - a poller outlives any storage error
            logger.warning("blob trigger '%s': scan failed: %s", self.spec.name, exc)
            self.receipts.distrust()  # see _scan_loop
            return None
        self._missing_logged = False
        return queued

    def _subscription_start(self, hosts: ContainerClient) -> datetime:
        """When this trigger first ran against this host storage: Event Grid reports no blob written before."""
        if self._subscribed_at is None:
            marker = hosts.get_blob_client(f"{SUBSCRIPTIONS}/{self._host_id}/{function_id(self.spec.name)}")
            with contextlib.suppress(ResourceExistsError):
                marker.upload_blob(b"", overwrite=False)
            self._subscribed_at = marker.get_blob_properties().last_modified
        return self._subscribed_at

    def _scan(self, listing: ContainerLister) -> int:
        queued = 0
        for key in listing:
            if self._stop.is_set():
                break
            if self._pattern.fullmatch(key[0]) and self._queue(key) == _QUEUED:
                queued += 1
        return queued

    def _logged(self, service: BlobServiceClient, hosts: ContainerClient, write: BlobWrite) -> None:
        """A blob the access log showed written: the version the line names, or (a line without ETag and
        Last-Modified) the one its properties name."""
        if write.etag is None or write.last_modified is None:
            self._look_up(service, hosts, write.name, new=True)
            return
        if not self._pattern.fullmatch(write.name):
            return
        try:
            if self._found(hosts, write.name, bare_etag(write.etag), write.last_modified, None, new=True):
                return
        except Exception as exc:  # noqa: BLE001 - the follow thread outlives any storage error
            logger.warning("blob trigger '%s': taking %s from the log failed: %s", self.spec.name, write.name, exc)
            with self._lock:
                self._trouble = True
        self._retry_later(write.name)

    def _look_up(self, service: BlobServiceClient, hosts: ContainerClient, name: str, new: bool = False) -> None:
        """A blob to try again (or one the log showed without its version): its properties, then the same path
        as a listing's."""
        if not self._pattern.fullmatch(name):
            return
        try:
            props = service.get_blob_client(self.container, name).get_blob_properties()
            if self._found(hosts, name, bare_etag(str(props.etag)), props.last_modified, props, new):
                return
        except ResourceNotFoundError:
            return  # deleted since
        except Exception as exc:  # noqa: BLE001 - the scan thread outlives any storage error
            logger.warning("blob trigger '%s': looking up %s failed: %s", self.spec.name, name, exc)
            with self._lock:
                self._trouble = True
        self._retry_later(name)

    def _found(
        self,
        hosts: ContainerClient,
        name: str,
        etag: str,
        last_modified: datetime | None,
        props: BlobProperties | None,
        new: bool,
    ) -> bool:
        """Queues one version of a blob unless it is done; False when it is being run (to be looked at again)."""
        # Azurite may write a log line after the follower took its start offset: a blob from before the
        # subscription existed is skipped here as the listing skips it.
        if self.event_grid and last_modified is not None and last_modified < self._subscription_start(hosts):
            return True
        # New only when written after the log was first followed (Last-Modified has whole seconds, so a blob
        # of the very second the host started is not): Azurite can log a write after answering it.
        since = self._following_since
        new = new and since is not None and last_modified is not None and last_modified >= since
        return self._queue((name, etag), props, new) != _BUSY

    def _queue(self, key: tuple[str, str], props: BlobProperties | None = None, new: bool = False) -> str:
        with self._lock:
            if self.receipts.done(key):
                return _DONE
            if key in self._in_flight:
                return _BUSY
            self._in_flight.add(key)
        # The receipt is not read here: the worker claims it (in storage: create-only, read only if it exists).
        self._work.put(_Work(key, props, time.monotonic(), new))
        return _QUEUED

    def _keep_receipts(self) -> None:
        if self.receipts.keep():
            with self._lock:
                self._relist = True

    def _retry_later(self, name: str) -> None:
        with self._lock:
            self._retries.setdefault(name, time.monotonic() + self._options.poll_interval)

    def _retry_due(self, service: BlobServiceClient, hosts: ContainerClient) -> None:
        now = time.monotonic()
        with self._lock:
            due = [name for name, at in self._retries.items() if at <= now]
            for name in due:
                del self._retries[name]
        for name in due:
            self._look_up(service, hosts, name)

    # -- processing -------------------------------------------------------------------------------------------
    def _work_loop(self) -> None:
        service: BlobServiceClient | None = None
        outputs = ServiceBusOutputs()
        try:
            while not self._stop.is_set():
                try:
                    work = self._work.get(timeout=0.5)
                except queue.Empty:
                    continue
                if service is None:
                    service = clients.blob_service(
                        self._data, max_single_get_size=_DOWNLOAD_CHUNK, max_chunk_get_size=_DOWNLOAD_CHUNK
                    )
                name, etag = work.key
                try:
                    props = work.props
                    if self.spec.trigger_deferred:
                        props = None  # an SDK-type parameter gets a reference: the host needs only the name
                    elif props is None or time.monotonic() - work.read_at > _FRESH_SECONDS:
                        props = service.get_blob_client(self.container, name).get_blob_properties()
                    # A blob deleted or overwritten since it was found: its new version is found on its own.
                    if props is None or bare_etag(str(props.etag)) == etag:
                        self._process(service, outputs, work, props)
                except ResourceNotFoundError:
                    pass
                except Exception as exc:  # noqa: BLE001 - the worker thread must survive storage errors
                    # Storage trouble around the invocation: the blob is tried again.
                    logger.warning("blob trigger '%s': %s: %s", self.spec.name, name, exc)
                    self._retry_later(name)
                    with self._lock:
                        self._trouble = True
                finally:
                    with self._lock:
                        self._in_flight.discard(work.key)
        finally:
            outputs.close()
            if service is not None:
                service.close()

    def _process(
        self, service: BlobServiceClient, outputs: ServiceBusOutputs, work: _Work, props: BlobProperties | None
    ) -> None:
        """Runs the function once for a blob version not done yet. ``props`` is None for an SDK-type parameter
        (the host needs nothing but the blob's name then)."""
        key = work.key
        name = key[0]
        attempt = self.receipts.claim(key, work.new)
        if attempt is None:
            return
        if attempt > self._options.max_dequeue_count:
            # Calls that never returned (the host killed during them) counted too: as the runtime's queue
            # processor does with a message dequeued more often than that, the blob goes to poison without a call.
            self._poison(service, key, attempt, props)
            return
        blob_type = _blob_type(props) if props is not None else "BlockBlob"
        reason = f"New blob detected({blob_type}): {self.container}/{name}"
        value = self._argument(service, name, props)
        result = self._invoker.invoke(self.spec, value, reason=reason, sb_outputs=outputs)
        if result.succeeded:
            self.receipts.settle(key, attempt, CallOutcome.SUCCEEDED)
            return
        if attempt < self._options.max_dequeue_count:
            logger.warning(
                "blob trigger '%s': %s failed (attempt %d of %d); trying again",
                self.spec.name, name, attempt, self._options.max_dequeue_count,
            )  # fmt: skip
            self.receipts.settle(key, attempt, CallOutcome.FAILED)
            self._retry_later(name)
            return
        self._poison(service, key, attempt, props)

    def _argument(self, service: BlobServiceClient, name: str, props: BlobProperties | None) -> Any:
        """What the worker passes: a client for an SDK-type parameter, else the whole content (as the host
        reads it before the call, pinned to the ETag the trigger saw)."""
        trigger = self.spec.trigger
        if props is None:
            data = reference(str(trigger["connection"]), self.container, name)
            return self._sdk_types.argument(self.spec.name, str(trigger["name"]), str(trigger["type"]),
                                            self.spec.trigger_annotation, data)  # fmt: skip
        blob = service.get_blob_client(self.container, name)
        content = blob.download_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified).readall()
        metadata = trigger_metadata(f"{self.container}/{name}", blob.url, blob_properties_dict(props),
                                    dict(props.metadata or {}))  # fmt: skip
        return content_argument(content, metadata, self.spec.trigger_annotation)

    def _poison(
        self, service: BlobServiceClient, key: tuple[str, str], attempt: int, props: BlobProperties | None
    ) -> None:
        """Sends the version's message to the poison queue and settles it as poisoned (not tried again)."""
        if props is None:
            props = service.get_blob_client(self.container, key[0]).get_blob_properties()
        etag = key[1]
        message = json.dumps(
            {
                "Type": "BlobTrigger",
                "FunctionId": function_id(self.spec.name),
                "BlobType": "PageBlob" if _blob_type(props) == "PageBlob" else "BlockBlob",
                "ContainerName": self.container,
                "BlobName": props.name,
                "ETag": etag.strip('"'),
            }
        )
        logger.error(
            "blob trigger '%s': %s failed %d times; message sent to queue %s",
            self.spec.name, props.name, self._options.max_dequeue_count, POISON_QUEUE,
        )  # fmt: skip
        with clients.queue_service(self._host_storage) as queues:
            poison: QueueClient = queues.get_queue_client(POISON_QUEUE)
            with contextlib.suppress(ResourceExistsError):
                poison.create_queue()
            body = base64.b64encode(message.encode()).decode() if self._options.base64_messages else message
            poison.send_message(body)
        self.receipts.settle(key, attempt, CallOutcome.POISONED)


def _blob_type(props: BlobProperties) -> str:
    return str(getattr(props.blob_type, "value", props.blob_type) or "BlockBlob")


def blob_trigger_options(
    host_json: dict[str, Any],
    poll_interval: float,
    cpu_count: int,
    scan_interval: float = 30.0,
    access_logs: Mapping[str, Path] | None = None,
    state_dir: Path | None = None,
) -> BlobTriggerOptions:
    extensions = host_json.get("extensions", {}) if isinstance(host_json.get("extensions"), dict) else {}
    queues = extensions.get("queues", {}) or {}
    blobs = extensions.get("blobs", {}) or {}
    return BlobTriggerOptions(
        poll_interval=poll_interval,
        # Storage extension 5.x: blobs.poisonBlobThreshold; before it the queues' maxDequeueCount applied.
        max_dequeue_count=int(blobs.get("poisonBlobThreshold") or queues.get("maxDequeueCount") or 5),
        parallelism=int(blobs.get("maxDegreeOfParallelism", 8 * cpu_count)),
        base64_messages=str(queues.get("messageEncoding", "base64")).lower() == "base64",
        scan_interval=scan_interval,
        access_logs=dict(access_logs or {}),
        **({"state_dir": state_dir} if state_dir is not None else {}),
    )
