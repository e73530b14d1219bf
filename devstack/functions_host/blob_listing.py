"""Container listing for the blob trigger's scan: each blob's name and ETag, cheaply.

The scan lists the whole container several times a second. azure-storage-blob's ``list_blobs`` builds a full
``BlobProperties`` per blob through its generic XML deserializer, about 0.3 ms of CPU each (a container of
1,500 blobs cost 450 ms per scan), while the scan needs only names and ETags. When the connection holds an
account key (connection strings, Azurite), :class:`ContainerLister` therefore calls the List Blobs REST
operation itself with a short-lived list-only container SAS over one ``requests`` session. Each page is read
with one regular expression (2 ms for 1,300 blobs, against 18 ms with ElementTree); a page the expression
does not account for blob by blob (an escaped or encoded name) is read with ElementTree instead. Pages hold
:data:`PAGE_SIZE` blobs, so the scan can act on the first blobs while Azurite still lists the rest; a listing
that nothing waits for uses :data:`LARGEST_PAGE`, fewer requests for the same blobs. Identity connections use the
SDK's listing. The blob's full properties are read later, only for blobs not seen before. With ``modified_since``
set, blobs last modified before that moment are left out (an Event Grid-source trigger never hears of blobs
written before its subscription). With ``pause_ratio`` set, the lister waits that many times a page's time before
asking for the next one, so a safety-net listing of a big container leaves most of the storage service to the
requests of files in flight.
"""

from __future__ import annotations

import html
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from functools import lru_cache

import requests
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError, ServiceRequestError
from azure.storage.blob import ContainerClient, ContainerSasPermissions, generate_container_sas

_SAS_LIFETIME = timedelta(hours=1)
_SAS_RENEW_BEFORE = timedelta(minutes=10)
_TIMEOUT_SECONDS = 30
PAGE_SIZE = 500
# Blobs per page of a listing in no hurry (the safety net beside the access log): the service's most. One page of
# 5,000 costs Azurite about a third less CPU than ten of 500 and is 1 request instead of 10.
LARGEST_PAGE = 5000
_BLOB = re.compile(rb"<Blob><Name>([^<&]*)</Name>.*?<Etag>([^<]*)</Etag>", re.DOTALL)
_DATED_BLOB = re.compile(
    rb"<Blob><Name>([^<&]*)</Name>.*?<Last-Modified>([^<]*)</Last-Modified>.*?<Etag>([^<]*)</Etag>", re.DOTALL
)
_NEXT_MARKER = re.compile(rb"<NextMarker>([^<]*)</NextMarker>")


def bare_etag(etag: str) -> str:
    return etag.strip('"')


class ContainerLister:
    """Yields ``(name, etag)`` for every blob of one container (or of those under ``prefix``); owned by one thread."""

    def __init__(
        self,
        container: ContainerClient,
        page_size: int = PAGE_SIZE,
        prefix: str = "",
        modified_since: datetime | None = None,
    ) -> None:
        self._container = container
        self.page_size = page_size
        self.prefix = prefix
        self.modified_since = modified_since
        self.pause_ratio = 0.0
        credential = container.credential
        self._key: str | None = getattr(credential, "account_key", None)
        self._session = requests.Session() if self._key else None
        self._sas = ""
        self._sas_expiry: datetime | None = None

    def close(self) -> None:
        if self._session is not None:
            self._session.close()

    def __iter__(self) -> Iterator[tuple[str, str]]:
        since = self.modified_since
        if self._session is None:
            for props in self._container.list_blobs(name_starts_with=self.prefix or None):
                if since is None or props.last_modified is None or props.last_modified >= since:
                    yield props.name, bare_etag(str(props.etag))
            return
        marker = ""
        while True:
            started = time.monotonic()
            page = self._page(marker)
            pause = self.pause_ratio * (time.monotonic() - started)
            if since is None:
                blobs, marker = parse_page(page)
                yield from blobs
            else:
                dated, marker = parse_dated_page(page)
                yield from ((name, etag) for name, etag, modified in dated if modified is None or modified >= since)
            if not marker:
                return
            if pause > 0:
                time.sleep(pause)

    def _page(self, marker: str) -> bytes:
        assert self._session is not None
        params = {"restype": "container", "comp": "list", "maxresults": str(self.page_size)}
        if self.prefix:
            params["prefix"] = self.prefix
        if marker:
            params["marker"] = marker
        try:
            response = self._session.get(f"{self._container.url}?{self._signature()}", params=params,
                                         timeout=_TIMEOUT_SECONDS)  # fmt: skip
        except requests.RequestException as exc:
            # requests' messages quote the URL, signature included: name only the failure's type.
            failure = type(exc).__name__
            raise ServiceRequestError(f"listing {self._container.container_name} failed: {failure}") from None
        if response.status_code == 404:
            raise ResourceNotFoundError(f"container {self._container.container_name} does not exist")
        if response.status_code != 200:
            raise HttpResponseError(f"listing {self._container.container_name} answered {response.status_code}")
        return response.content

    def _signature(self) -> str:
        now = datetime.now(UTC)
        if self._sas_expiry is None or now > self._sas_expiry - _SAS_RENEW_BEFORE:
            self._sas_expiry = now + _SAS_LIFETIME
            self._sas = generate_container_sas(
                str(self._container.account_name),
                self._container.container_name,
                account_key=self._key,
                permission=ContainerSasPermissions(list=True),
                start=now - timedelta(minutes=5),
                expiry=self._sas_expiry,
            )
        return self._sas


def parse_page(page: bytes) -> tuple[list[tuple[str, str]], str]:
    """(name, ETag) of each blob in one List Blobs answer, and its NextMarker ("" on the last page)."""
    blobs = [(name.decode(), bare_etag(etag.decode())) for name, etag in _BLOB.findall(page)]
    if len(blobs) != page.count(b"<Blob>"):  # a name the expression skips: read the page properly
        root = ET.fromstring(page)
        blobs = [
            (name, bare_etag(etag))
            for blob in root.iter("Blob")
            if (name := blob.findtext("Name")) is not None and (etag := blob.findtext("Properties/Etag")) is not None
        ]
        return blobs, root.findtext("NextMarker") or ""
    marker = _NEXT_MARKER.search(page)
    return blobs, html.unescape(marker.group(1).decode()) if marker else ""


def parse_dated_page(page: bytes) -> tuple[list[tuple[str, str, datetime | None]], str]:
    """Like :func:`parse_page`, with each blob's Last-Modified (None if the answer has none)."""
    found = _DATED_BLOB.findall(page)
    if len(found) == page.count(b"<Blob>"):
        blobs = [
            (name.decode(), bare_etag(etag.decode()), _http_date(modified.decode())) for name, modified, etag in found
        ]
        marker = _NEXT_MARKER.search(page)
        return blobs, html.unescape(marker.group(1).decode()) if marker else ""
    root = ET.fromstring(page)
    dated = [
        (name, bare_etag(etag), _http_date(blob.findtext("Properties/Last-Modified") or ""))
        for blob in root.iter("Blob")
        if (name := blob.findtext("Name")) is not None and (etag := blob.findtext("Properties/Etag")) is not None
    ]
    return dated, root.findtext("NextMarker") or ""


@lru_cache(maxsize=4096)
def _http_date(text: str) -> datetime | None:
    # Dates have whole seconds, so a listing of thousands of blobs repeats a few hundred of them.
    try:
        return parsedate_to_datetime(text) if text else None
    except (TypeError, ValueError):
        return None
