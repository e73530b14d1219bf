"""Blob trigger (``source`` LogsAndContainerScan): polls the container, runs the function once per blob ETag.

State lives in the host storage account, so it survives restarts: a receipt blob
``azure-webjobs-hosts/blobreceipts/<host id>/Host.Functions.<name>/<etag>/<container>/<blob>`` records the
attempts (metadata ``Attempts``) and whether the blob is done. A failed blob is retried on the next scans; after
``poisonBlobThreshold`` attempts (host.json ``extensions.blobs``, else ``extensions.queues.maxDequeueCount``,
default 5) a message goes to queue ``webjobs-blobtrigger-poison`` in the documented shape and the blob is not tried
again.
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
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobProperties, BlobServiceClient, ContainerClient
from azure.storage.queue import QueueClient

from . import clients
from .blob_binding import SdkTypeArguments, content_argument, reference, trigger_metadata
from .blob_listing import ContainerLister, bare_etag
from .host_storage import function_id, hosts_container
from .indexing import FunctionSpec
from .invoker import Invoker
from .servicebus_output import ServiceBusOutputs
from .settings import Connection

logger = logging.getLogger(__name__)

POISON_QUEUE = "webjobs-blobtrigger-poison"
_DOWNLOAD_CHUNK = 4 * 1024 * 1024


@dataclass(frozen=True)
class BlobTriggerOptions:
    poll_interval: float = 2.0
    max_dequeue_count: int = 5
    parallelism: int = 8
    base64_messages: bool = True


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
        self._data = spec.connection(spec.trigger)
        self._options = options
        self._sdk_types = SdkTypeArguments()
        self.container, self._pattern = compile_path(str(spec.trigger["path"]))
        self._receipt_prefix = f"blobreceipts/{host_id}/{function_id(spec.name)}/"
        # (name, etag) of each blob to run the function on, with its receipt's metadata as the scan read it
        self._work: queue.Queue[tuple[tuple[str, str], dict[str, str]]] = queue.Queue()
        self._lock = threading.Lock()
        self._in_flight: set[tuple[str, str]] = set()
        self._done: set[tuple[str, str]] = set()
        self._threads = [threading.Thread(target=self._scan_loop, name=f"blobscan-{spec.name}", daemon=True)]
        self._threads += [
            threading.Thread(target=self._work_loop, name=f"blob-{spec.name}-{i}", daemon=True)
            for i in range(max(1, options.parallelism))
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def receipt_name(self, blob: str, etag: str) -> str:
        return f"{self._receipt_prefix}{etag.strip(chr(34))}/{self.container}/{blob}"

    # -- scanning ---------------------------------------------------------------------------------------------
    def _scan_loop(self) -> None:
        data = clients.blob_service(self._data).get_container_client(self.container)
        listing = ContainerLister(data)
        receipts = hosts_container(self._host_storage)
        missing_logged = False
        try:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    self._scan(listing, receipts)
                    missing_logged = False
                except ResourceNotFoundError:
                    if not missing_logged:
                        logger.warning(
                            "blob trigger '%s': container '%s' does not exist yet", self.spec.name, self.container
                        )
                        missing_logged = True
                except Exception as exc:  # noqa: BLE001 - a poller outlives any storage error
                    logger.warning("blob trigger '%s': scan failed: %s", self.spec.name, exc)
                    # Storage that was unreachable may come back from an earlier state (Azurite killed before
                    # it saved its metadata): receipts it lost must be looked up again, not trusted from memory.
                    with self._lock:
                        self._done.clear()
                # A big container makes each scan slow: then pause twice as long as the scan took, so
                # scanning takes at most a third of a core (and of the storage service) whatever the size.
                self._stop.wait(max(self._options.poll_interval, 2 * (time.monotonic() - started)))
        finally:
            listing.close()
            data.close()
            receipts.close()

    def _scan(self, listing: ContainerLister, receipts: ContainerClient) -> None:
        for key in listing:
            if self._stop.is_set():
                return
            if not self._pattern.fullmatch(key[0]):
                continue
            with self._lock:
                if key in self._done or key in self._in_flight:
                    continue
            state = _receipt_state(receipts, self.receipt_name(*key))
            if state is not None and state.get("Incomplete") != "true":
                with self._lock:
                    self._done.add(key)
                continue
            with self._lock:
                self._in_flight.add(key)
            # Only this host writes the receipt while the key is in flight, so the worker can go by this state.
            self._work.put((key, state or {}))

    # -- processing -------------------------------------------------------------------------------------------
    def _work_loop(self) -> None:
        service: BlobServiceClient | None = None
        receipts: ContainerClient | None = None
        outputs = ServiceBusOutputs()
        try:
            while not self._stop.is_set():
                try:
                    key, state = self._work.get(timeout=0.5)
                except queue.Empty:
                    continue
                if service is None or receipts is None:
                    service = clients.blob_service(
                        self._data, max_single_get_size=_DOWNLOAD_CHUNK, max_chunk_get_size=_DOWNLOAD_CHUNK
                    )
                    receipts = hosts_container(self._host_storage)
                try:
                    props = service.get_blob_client(self.container, key[0]).get_blob_properties()
                    # A blob deleted or overwritten since the scan: the next scan sees what is there now.
                    if bare_etag(str(props.etag)) == key[1]:
                        self._process(service, receipts, outputs, props, state)
                except ResourceNotFoundError:
                    pass
                except Exception as exc:  # noqa: BLE001 - the worker thread must survive storage errors
                    # Storage trouble around the invocation: the next scan tries again.
                    logger.warning("blob trigger '%s': %s: %s", self.spec.name, key[0], exc)
                finally:
                    with self._lock:
                        self._in_flight.discard(key)
        finally:
            outputs.close()
            for client in (service, receipts):
                if client is not None:
                    client.close()

    def _process(
        self,
        service: BlobServiceClient,
        receipts: ContainerClient,
        outputs: ServiceBusOutputs,
        props: BlobProperties,
        state: dict[str, str],
    ) -> None:
        """Runs the function once for a blob whose receipt is missing or incomplete (``state``: its metadata)."""
        etag = str(props.etag)
        key = (props.name, bare_etag(etag))
        receipt = self.receipt_name(*key)
        attempt = int(state.get("Attempts", "0")) + 1
        receipts.upload_blob(receipt, b"", overwrite=True, metadata={"Incomplete": "true", "Attempts": str(attempt)})
        reason = f"New blob detected({_blob_type(props)}): {self.container}/{props.name}"
        value = self._argument(service, props)
        result = self._invoker.invoke(self.spec, value, reason=reason, sb_outputs=outputs)
        if result.succeeded:
            receipts.get_blob_client(receipt).set_blob_metadata({"Attempts": str(attempt)})
            with self._lock:
                self._done.add(key)
            return
        if attempt < self._options.max_dequeue_count:
            logger.warning(
                "blob trigger '%s': %s failed (attempt %d of %d); retrying on a later scan",
                self.spec.name, props.name, attempt, self._options.max_dequeue_count,
            )  # fmt: skip
            return
        self._poison(props, etag)
        receipts.get_blob_client(receipt).set_blob_metadata({"Attempts": str(attempt), "Poisoned": "true"})
        with self._lock:
            self._done.add(key)

    def _argument(self, service: BlobServiceClient, props: BlobProperties) -> Any:
        """What the worker passes: a client for an SDK-type parameter, else the whole content (as the host
        reads it before the call, pinned to the ETag the trigger saw)."""
        trigger = self.spec.trigger
        if self.spec.trigger_deferred:
            data = reference(str(trigger["connection"]), self.container, props.name)
            return self._sdk_types.argument(self.spec.name, str(trigger["name"]), str(trigger["type"]),
                                            self.spec.trigger_annotation, data)  # fmt: skip
        blob = service.get_blob_client(self.container, props.name)
        content = blob.download_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified).readall()
        metadata = trigger_metadata(f"{self.container}/{props.name}", blob.url, blob_properties_dict(props),
                                    dict(props.metadata or {}))  # fmt: skip
        return content_argument(content, metadata, self.spec.trigger_annotation)

    def _poison(self, props: BlobProperties, etag: str) -> None:
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
        with clients.queue_service(self._host_storage) as service:
            poison: QueueClient = service.get_queue_client(POISON_QUEUE)
            with contextlib.suppress(ResourceExistsError):
                poison.create_queue()
            body = base64.b64encode(message.encode()).decode() if self._options.base64_messages else message
            poison.send_message(body)


def _blob_type(props: BlobProperties) -> str:
    return str(getattr(props.blob_type, "value", props.blob_type) or "BlockBlob")


def _receipt_state(receipts: ContainerClient, name: str) -> dict[str, str] | None:
    try:
        return dict(receipts.get_blob_client(name).get_blob_properties().metadata or {"Done": "true"})
    except ResourceNotFoundError:
        return None


def blob_trigger_options(host_json: dict[str, Any], poll_interval: float, cpu_count: int) -> BlobTriggerOptions:
    extensions = host_json.get("extensions", {}) if isinstance(host_json.get("extensions"), dict) else {}
    queues = extensions.get("queues", {}) or {}
    blobs = extensions.get("blobs", {}) or {}
    return BlobTriggerOptions(
        poll_interval=poll_interval,
        # Storage extension 5.x: blobs.poisonBlobThreshold; before it the queues' maxDequeueCount applied.
        max_dequeue_count=int(blobs.get("poisonBlobThreshold") or queues.get("maxDequeueCount") or 5),
        parallelism=int(blobs.get("maxDegreeOfParallelism", 8 * cpu_count)),
        base64_messages=str(queues.get("messageEncoding", "base64")).lower() == "base64",
    )
