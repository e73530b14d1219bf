"""``submit_blob``: blob trigger on the input container; turns each new file into a scoring request.

The function binds a ``BlobClient`` (SDK-type binding, package ``azurefunctions-extensions-bindings-blob``):
the host then hands the worker a reference to the blob (connection, container and blob name), never its
content, so a 2 GiB input costs the function app no memory. With ``func.InputStream``, ``bytes`` or ``str``
the host would read the whole blob and send it to the worker before the function runs. Size, ETag and
metadata come from one ranged read through our own adapter, which reads no more than a small file's whole
content (:data:`shared.contracts.INLINE_INPUT_MAX_BYTES`, sent on with the request); a larger file is never
downloaded by the function app.
"""

from __future__ import annotations

import logging

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from shared import submit
from shared.ports import BlobInfo
from shared.settings import DATA_STORAGE, blob_trigger_source
from shared.telemetry import pipeline
from shared.wiring import services

bp = func.Blueprint()
logger = logging.getLogger(__name__)


def trigger_info(client: blob.BlobClient) -> BlobInfo:
    """What the trigger itself says about the blob: its name and URL (no request to storage)."""
    return BlobInfo(name=str(client.blob_name), url=str(client.url), etag="", size=0)


@bp.function_name("submit_blob")
@bp.blob_trigger(
    arg_name="client",
    path="%INPUT_CONTAINER%/{name}",
    connection=DATA_STORAGE,
    source=blob_trigger_source(),  # type: ignore[arg-type]
)
def submit_blob(client: blob.BlobClient) -> None:
    svc = services()
    container, name = str(client.container_name), str(client.blob_name)
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
            trigger_info=trigger_info(client),
        )
        pipeline.set_outcome(outcome)
        logger.info("submit_blob %s/%s: %s", container, name, outcome)
