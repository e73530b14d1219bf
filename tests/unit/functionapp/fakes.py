"""Hand-written fakes of the function app's own ports (shared.ports), for unit tests."""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import unquote

from shared.ports import BlobInfo, BlobNotFound, EndpointReply, OutgoingMessage, PreconditionFailed
from shared.settings import Settings, load_settings

ACCOUNT = "https://acct.blob.example"


@dataclass
class StoredBlob:
    data: bytes
    etag: str
    content_type: str
    metadata: dict[str, str]


class FakeBlobStore:
    """Blobs in a dict; ``ops`` counts the requests a real store would get, by method, and ``ops_by_container``
    by (method, container)."""

    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self.ops_by_container: Counter[tuple[str, str]] = Counter()
        self.blobs: dict[tuple[str, str], StoredBlob] = {}
        self._etags = itertools.count(1)
        self.copies: list[tuple[str, str, str]] = []
        self.fail_next_writes: dict[tuple[str, str], int] = {}

    def _count(self, kind: str, container: str) -> None:
        self.ops[kind] += 1
        self.ops_by_container[kind, container] += 1

    def put(self, container: str, name: str, data: bytes, metadata: Mapping[str, str] | None = None) -> str:
        etag = f'"0x{next(self._etags):04X}"'
        self.blobs[(container, name)] = StoredBlob(data, etag, "application/octet-stream", dict(metadata or {}))
        return etag

    def url(self, container: str, name: str) -> str:
        return f"{ACCOUNT}/{container}/{name}"

    def properties(self, container: str, name: str) -> BlobInfo:
        self._count("properties", container)
        return self._info(container, name)[0]

    def peek(self, container: str, name: str, max_bytes: int) -> tuple[BlobInfo, bytes | None]:
        self._count("peek", container)
        info, data = self._info(container, name)
        return info, data if len(data) <= max_bytes else None

    def _info(self, container: str, name: str) -> tuple[BlobInfo, bytes]:
        blob = self.blobs.get((container, name))
        if blob is None:
            raise BlobNotFound(name)
        return BlobInfo(name, self.url(container, name), blob.etag, len(blob.data), dict(blob.metadata)), blob.data

    def read(self, container: str, name: str) -> tuple[bytes, str]:
        self._count("read", container)
        blob = self.blobs.get((container, name))
        if blob is None:
            raise BlobNotFound(name)
        return blob.data, blob.etag

    def write(
        self,
        container: str,
        name: str,
        data: bytes,
        *,
        content_type: str,
        metadata: Mapping[str, str] | None = None,
        if_match: str | None = None,
        if_none_match_any: bool = False,
    ) -> str:
        self._count("write", container)
        key = (container, name)
        if self.fail_next_writes.get(key, 0) > 0:
            # Simulates another writer winning the race just before this write.
            self.fail_next_writes[key] -= 1
            raise PreconditionFailed(name)
        current = self.blobs.get(key)
        if if_match is not None and (current is None or current.etag != if_match):
            raise PreconditionFailed(name)
        if if_none_match_any and current is not None:
            raise PreconditionFailed(name)
        etag = self.put(container, name, data, metadata)
        self.blobs[key].content_type = content_type
        return etag

    def set_metadata(self, container: str, name: str, metadata: Mapping[str, str], *, if_match: str) -> str:
        self._count("set_metadata", container)
        blob = self.blobs.get((container, name))
        if blob is None:
            raise BlobNotFound(name)
        if blob.etag != if_match:
            raise PreconditionFailed(name)
        blob.metadata = dict(metadata)
        blob.etag = f'"0x{next(self._etags):04X}"'
        return blob.etag

    def copy_from_url(
        self, source_url: str, container: str, name: str, *, content_type: str, metadata: Mapping[str, str]
    ) -> None:
        self._count("copy_from_url", container)
        located = self.locate(source_url)
        if located is None:
            raise ValueError(f"copy source {source_url} is not a blob of this storage account")
        data, _ = self.read(*located)
        self.copies.append((source_url, container, name))
        self.write(container, name, data, content_type=content_type, metadata=metadata)
        self.ops.subtract({"read": 1, "write": 1})  # one request to the real service
        self.ops_by_container.subtract({("read", located[0]): 1, ("write", container): 1})

    def locate(self, url: str) -> tuple[str, str] | None:
        path = url.split("?")[0]
        if not path.startswith(f"{ACCOUNT}/"):
            return None
        container, _, name = path[len(ACCOUNT) + 1 :].partition("/")
        return (container, unquote(name)) if container and name else None

    def delete(self, container: str, name: str, *, if_match: str | None = None) -> None:
        self._count("delete", container)
        blob = self.blobs.get((container, name))
        if if_match is not None and (blob is None or blob.etag != if_match):  # as Azurite answers
            raise PreconditionFailed(name)
        self.blobs.pop((container, name), None)

    def list(self, container: str, prefix: str) -> Iterator[BlobInfo]:
        self._count("list", container)
        for (c, n), _ in sorted(self.blobs.items()):
            if c == container and n.startswith(prefix):
                info = self.properties(c, n)
                self.ops["properties"] -= 1  # the listing holds them
                self.ops_by_container["properties", c] -= 1
                yield info

    def read_sas_url(self, container: str, name: str, ttl: timedelta) -> str:
        return f"{self.url(container, name)}?sig=fake&ttl={int(ttl.total_seconds())}"

    def names(self, container: str) -> list[str]:
        return sorted(n for c, n in self.blobs if c == container)


@dataclass
class Sent:
    topic: str
    message: OutgoingMessage
    at: datetime | None = None


class FakeBus:
    def __init__(self) -> None:
        self.sent: list[Sent] = []

    def publish(self, topic: str, message: OutgoingMessage) -> None:
        self.sent.append(Sent(topic, message))

    def schedule(self, topic: str, message: OutgoingMessage, at: datetime) -> None:
        self.sent.append(Sent(topic, message, at))


@dataclass
class FakeEndpoint:
    replies: list[EndpointReply] = field(default_factory=lambda: [EndpointReply(202, '{"status": "accepted"}')])
    bodies: list[bytes] = field(default_factory=list)

    def post(self, body: bytes) -> EndpointReply:
        self.bodies.append(body)
        return self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]


@dataclass
class FixedClock:
    moment: datetime = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

    def now(self) -> datetime:
        return self.moment


TWO_ROUTES = Path(__file__).resolve().parents[2] / "fixtures" / "models-two-routes.json"  # default, churn-v2

BASE_ENV = {
    "DataStorage": "UseDevelopmentStorage=true",
    "ServiceBus": "Endpoint=sb://127.0.0.1:5673;SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true",
    "SCORING_URI": "http://127.0.0.1:5001/score",
    "SCORING_KEY": "secret",
    "MODEL_ROUTES_FILE": str(TWO_ROUTES),
    "SCORING_URI__CHURN_V2": "http://127.0.0.1:5002/score",
    "SCORING_DEPLOYMENT__CHURN_V2": "blue",
    "MAX_INPUT_BYTES": "1000",
}


def make_settings(**overrides: str) -> Settings:
    return load_settings({**BASE_ENV, **overrides})
