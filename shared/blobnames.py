"""The blob-name rule: which input names the pipeline accepts, and the names of what it writes for them.

Azure Blob Storage allows blob names of 1 to 1,024 characters with at most 254 path segments
(https://learn.microsoft.com/rest/api/storageservices/naming-and-referencing-containers--blobs--and-metadata).
Every input gets an output of the same name or an error record named ``errors/<input name>.error.json``
(:func:`shared.contracts.error_blob_name`), so an input name is accepted only if that longer name still fits:
at most :data:`MAX_INPUT_NAME_LENGTH` characters and one segment fewer than the limit. Names that are unsafe
to hand to a storage request (control characters, backslashes, empty, ``.`` or ``..`` segments) are refused
too; their error record gets a cleaned name from :func:`safe_error_name`.

This module is standard-library only: the function app and the scoring service both apply the rule.
"""

from __future__ import annotations

import re

from shared.contracts import error_blob_name

MAX_BLOB_NAME_LENGTH = 1024
MAX_PATH_SEGMENTS = 254
MAX_INPUT_NAME_LENGTH = MAX_BLOB_NAME_LENGTH - len(error_blob_name(""))
MAX_INPUT_SEGMENTS = MAX_PATH_SEGMENTS - 1  # "errors/" adds one
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")


def has_control_characters(text: str) -> bool:
    return _CONTROL.search(text) is not None


def name_problem(name: str) -> str | None:
    """Why ``name`` is not acceptable as an input name, or None."""
    if not name:
        return "the blob name is empty"
    if len(name) > MAX_INPUT_NAME_LENGTH:
        return f"the blob name is longer than {MAX_INPUT_NAME_LENGTH} characters"
    if problem := path_problem(name):
        return problem
    if len(name.split("/")) > MAX_INPUT_SEGMENTS:
        return f"the blob name has more than {MAX_INPUT_SEGMENTS} path segments"
    return None


def path_problem(name: str) -> str | None:
    """Why ``name`` is unsafe to put in a storage request path (any blob, not only inputs), or None."""
    if has_control_characters(name):
        return "the blob name contains control characters"
    if "\\" in name:
        return "the blob name contains a backslash"
    if any(seg in ("", ".", "..") for seg in name.split("/")):
        return "the blob name has an empty, '.' or '..' path segment"
    return None


def safe_error_name(input_name: str) -> str:
    """Error record name for an input name that may itself be unsafe (control chars, ``..`` segments)."""
    cleaned = _UNSAFE.sub("_", input_name)
    segments = ["_" if s in ("", ".", "..") else s for s in cleaned.split("/")][:MAX_INPUT_SEGMENTS]
    return error_blob_name("/".join(segments)[:MAX_INPUT_NAME_LENGTH])
