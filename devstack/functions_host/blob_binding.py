"""The blob trigger's argument, built the way the Functions host and the Python worker build it.

* ``func.InputStream`` (or ``bytes`` / ``str``): the host reads the **whole** blob and sends its bytes with
  the trigger metadata (``BlobTrigger``, ``Uri``, ``Properties``, ``Metadata``); the worker wraps them with
  azure.functions' own ``BlobConverter``. So does this host: the content is in memory before the call.
* An SDK type (``azurefunctions.extensions.bindings.blob.BlobClient``, ``ContainerClient``,
  ``StorageStreamDownloader``): the worker marks the binding ``SupportsDeferredBinding`` when it indexes the
  app, the host then sends ``model_binding_data`` (a reference: connection name, container, blob name) instead
  of the content, and the worker asks the extension's converter for the client. This host builds the same
  reference and calls the same converter, and, like the worker, keeps the clients it made for the same
  parameter, type, reference and function and hands them out again; it keeps the last
  :data:`SDK_ARGUMENTS_KEPT` only (the worker keeps every one, and each holds a whole service client and its
  pipeline, so a burst of new blobs would keep one per blob for the life of the process).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import azure.functions as func
from azure.functions import meta

# What the host's blob extension puts into the reference it sends (ParameterBindingData).
BINDING_DATA_VERSION = "1.0"
BINDING_DATA_SOURCE = "AzureStorageBlobs"
BINDING_DATA_CONTENT_TYPE = "application/json"
SDK_ARGUMENTS_KEPT = 64


@dataclass(frozen=True)
class ModelBindingData:
    """The fields of the runtime's ``ModelBindingData`` message that the extension reads."""

    version: str
    source: str
    content_type: str
    content: bytes


def deferred_registry() -> Any | None:
    """The worker's registry of SDK-type converters, or None when azurefunctions-extensions-base is missing."""
    try:
        from azurefunctions.extensions.base import get_binding_registry
    except ImportError:
        return None
    return get_binding_registry()


def is_deferred(annotation: Any) -> bool:
    """True when the worker would bind this parameter as an SDK type (``check_deferred_bindings_enabled``)."""
    registry = deferred_registry()
    return registry is not None and annotation is not None and bool(registry.check_supported_type(annotation))


def deferred_converter(binding_type: str, annotation: Any) -> Any | None:
    """The extension's converter that can give ``annotation`` for ``binding_type``, or None."""
    registry = deferred_registry()
    converter = None if registry is None else registry.get(binding_type)
    if converter is None or not converter.check_input_type_annotation(annotation):
        return None
    return converter


def reference(connection: str, container: str, blob: str) -> ModelBindingData:
    content = json.dumps({"Connection": connection, "ContainerName": container, "BlobName": blob}).encode()
    return ModelBindingData(BINDING_DATA_VERSION, BINDING_DATA_SOURCE, BINDING_DATA_CONTENT_TYPE, content)


class SdkTypeArguments:
    """Builds SDK-type arguments with the extension's converter, reusing them as the worker's cache does."""

    def __init__(self, kept: int = SDK_ARGUMENTS_KEPT) -> None:
        self._lock = threading.Lock()
        self._kept = kept
        self._made: OrderedDict[tuple[str, Any, bytes, str], Any] = OrderedDict()

    def argument(
        self, function: str, parameter: str, binding_type: str, annotation: Any, data: ModelBindingData
    ) -> Any:
        key = (parameter, annotation, data.content, function)
        with self._lock:
            if key in self._made:
                self._made.move_to_end(key)
                return self._made[key]
        from azurefunctions.extensions.base import Datum

        converter = deferred_converter(binding_type, annotation)
        if converter is None:
            raise TypeError(f"no SDK-type converter gives {annotation!r} for a {binding_type} binding")
        value = converter.decode(Datum(data, "model_binding_data"), trigger_metadata={}, pytype=annotation)
        with self._lock:
            value = self._made.setdefault(key, value)
            self._made.move_to_end(key)
            while len(self._made) > self._kept:
                self._made.popitem(last=False)
            return value


def trigger_metadata(name: str, uri: str, properties: Mapping[str, Any], metadata: Mapping[str, str]) -> dict[str, Any]:
    """The blob trigger's metadata as the worker receives it (JSON values for the objects)."""
    return {
        "BlobTrigger": meta.Datum(name, "string"),
        "Uri": meta.Datum(uri, "string"),
        "Properties": meta.Datum(json.dumps(dict(properties)), "json"),
        "Metadata": meta.Datum(json.dumps(dict(metadata)), "json"),
    }


def content_argument(content: bytes, metadata: Mapping[str, Any], annotation: Any) -> Any:
    """The whole content, as the host sends it, wrapped by azure.functions' ``BlobConverter``."""
    if annotation is bytes:
        return content
    if annotation is str:
        return content.decode("utf-8")
    return func.blob.BlobConverter.decode(meta.Datum(content, "bytes"), trigger_metadata=dict(metadata))
