"""``submit_blob``: blob trigger on the input container; turns each new file into a scoring request.

The function uses only the trigger's name; size, ETag and metadata come from the blob's properties via
the SDK (the ETag is not in the Python ``InputStream``), and it never calls ``read()``.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared import submit
from shared.ports import BlobInfo
from shared.settings import DATA_STORAGE, blob_trigger_source
from shared.telemetry import pipeline
from shared.wiring import services

bp = func.Blueprint()
logger = logging.getLogger(__name__)


def split_trigger_name(trigger_name: str, container: str) -> tuple[str, str]:
    """The trigger's ``name`` is ``<container>/<blob name>``; tolerate a bare blob name too."""
    prefix = f"{container}/"
    return container, trigger_name[len(prefix) :] if trigger_name.startswith(prefix) else trigger_name


def trigger_info(blob: func.InputStream, name: str) -> BlobInfo:
    """What the trigger metadata says (no content read); the ETag is there only if the host passed it."""
    # blob_properties / metadata exist on the worker's InputStream, not on the abstract type.
    properties = getattr(blob, "blob_properties", None)
    properties = properties if isinstance(properties, dict) else {}
    etag = properties.get("ETag") or properties.get("Etag") or ""
    metadata = getattr(blob, "metadata", None)
    metadata = metadata if isinstance(metadata, dict) else {}
    return BlobInfo(name=name, url=blob.uri or "", etag=str(etag), size=blob.length or 0, metadata=metadata)


@bp.function_name("submit_blob")
@bp.blob_trigger(
    arg_name="blob",
    path="%INPUT_CONTAINER%/{name}",
    connection=DATA_STORAGE,
    source=blob_trigger_source(),  # type: ignore[arg-type]
)
def submit_blob(blob: func.InputStream) -> None:
    svc = services()
    container, name = split_trigger_name(blob.name or "", svc.settings.input_container)
    # The host does not trace blob triggers: each file's trace starts here.
    with pipeline.submit_span(container, name):
        outcome = submit.submit_blob(
            container,
            name,
            settings=svc.settings,
            blobs=svc.blobs,
            bus=svc.bus,
            ledger=svc.ledger,
            now=svc.clock.now(),
            trigger_info=trigger_info(blob, name),
        )
        pipeline.set_outcome(outcome)
        logger.info("submit_blob %s/%s: %s", container, name, outcome)
