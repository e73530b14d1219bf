"""Which of some blobs exist, found by listing the folders they share instead of reading each one.

``reconcile`` asks it whether the outputs of the successes it checks are there, the writer whether the inputs
of a batch's successes have an error record. A folder (the name up to its last ``/``) is listed only where at
least two of the names share it: for one name, a read costs no more than a listing's first page. A listing
holds up to 5,000 blobs a page (:data:`LIST_PAGE`), and every blob under the folder's prefix counts, those of
its subfolders too, so a folder's listing stops before a page that would cost more than reading the names it
has not found yet. Such names, and the names alone in their folder, stay unknown: the caller reads them one by
one. A name the listing of its folder ran to the end without showing is absent as of the listing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from shared.ports import BlobStore

LIST_PAGE = 5000  # blobs per page of List Blobs (the service's most and default)

Blob = tuple[str, str]  # (container, name)


@dataclass(frozen=True)
class Presence:
    """What the listings showed of the blobs asked about; any other blob asked about is unknown."""

    found: frozenset[Blob]
    absent: frozenset[Blob]  # in a folder listed to its end, and not in the listing


def folder_of(name: str) -> str:
    """The prefix a blob's folder is listed with: its name up to and including the last ``/`` ("" at the top)."""
    return name[: name.rfind("/") + 1]


def find_by_listing(blobs: BlobStore, wanted: Iterable[Blob]) -> Presence:
    """Lists the folder of each group of at least two wanted blobs once, as far as it pays (module docstring)."""
    folders: dict[Blob, set[str]] = defaultdict(set)
    for container, name in wanted:
        folders[(container, folder_of(name))].add(name)
    found: set[Blob] = set()
    absent: set[Blob] = set()
    for (container, folder), names in folders.items():
        if len(names) < 2:
            continue
        missing = set(names)
        complete = True
        for listed, info in enumerate(blobs.list(container, folder), start=1):
            missing.discard(info.name)
            if not missing:
                break
            if listed % LIST_PAGE == 0 and listed // LIST_PAGE >= len(missing):
                complete = False
                break
        found |= {(container, name) for name in names - missing}
        if complete:
            absent |= {(container, name) for name in missing}
    return Presence(frozenset(found), frozenset(absent))
