"""Azure Storage clients of the scoring service: the input blob (SAS URL) and the results container.

Input: only blobs of the configured storage accounts are read. :func:`check_input_url` holds a request's
``blob_url`` against the allow-list ``INPUT_STORAGE_ACCOUNT_URLS`` (scheme, host and port exactly as
configured, under the account's path; by default the results account) before the request is accepted, and
names the rule a refused URL breaks. Host names are compared as written, never resolved, so other spellings
of an allowed address (decimal, octal or hex IPv4, IPv6, names that resolve to it) are refused too. The
client follows no redirects. ``BlobClient.from_blob_url`` reads with the SAS in the URL; a URL without a SAS
signature is read with DefaultAzureCredential (managed identity in Azure).

Results: a connection string (local stack) or an account URL with DefaultAzureCredential. With an account
key at hand the referenced results URL carries a short read-only SAS, so the writer needs no credential of
its own for this account; with an identity the URL is plain and the reader's identity needs read access to
the container. URLs are never logged with their query string.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any
from urllib.parse import parse_qs, urlsplit
from urllib.request import getproxies_environment

from azure.core.exceptions import ResourceExistsError
from azure.core.pipeline.transport import RequestsTransport
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobSasPermissions,
    BlobServiceClient,
    ContentSettings,
    ExponentialRetry,
    generate_blob_sas,
)

from scoring.service.settings import ScoringSettings
from shared.retry import INPUT_READ

logger = logging.getLogger(__name__)

RESULT_SAS_TTL = timedelta(hours=24)
DOWNLOAD_PIECE_BYTES = 4 * 1024 * 1024
ALLOW_LIST_SETTING = "INPUT_STORAGE_ACCOUNT_URLS"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 3986 characters only: no spaces, backslashes, control or non-ASCII characters that parsers read differently.
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+")
# The SDK never percent-encodes these in a blob URL's path; encoded, they could change the path after our check.
_ENCODED_SEPARATORS = re.compile(r"%(2e|2f|5c)", re.IGNORECASE)


class BlobUrlRefused(ValueError):
    """A request's blob URL breaks the input allow-list; the message names the rule."""


@dataclass(frozen=True)
class InputAccount:
    """One storage account input may be read from: scheme, host and port exactly, paths under ``path``."""

    scheme: str
    host: str
    port: int
    path: str  # "/" in Azure; "/devstoreaccount1/" for Azurite's path-style URLs

    @classmethod
    def from_url(cls, url: str) -> InputAccount:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
        return cls(parts.scheme, (parts.hostname or "").lower(), port, parts.path.rstrip("/") + "/")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


@cache
def input_accounts(settings: ScoringSettings) -> tuple[InputAccount, ...]:
    """The allow-list: ``INPUT_STORAGE_ACCOUNT_URLS``, else the account results are written to."""
    urls = settings.input_account_urls
    if not urls and settings.results_account_url:
        urls = (settings.results_account_url,)
    elif not urls and settings.results_connection:
        urls = (str(BlobServiceClient.from_connection_string(settings.results_connection).url),)
    return tuple(InputAccount.from_url(url) for url in urls)


def check_input_url(url: str, accounts: tuple[InputAccount, ...]) -> None:
    """Raises :class:`BlobUrlRefused` naming the rule unless ``url`` is a blob URL of one of ``accounts``."""
    if not _URL_CHARACTERS.fullmatch(url):
        raise BlobUrlRefused("blob_url may contain only URL characters (no spaces, backslashes or control characters)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise BlobUrlRefused(f"blob_url has an invalid host or port ({exc})") from exc
    if parts.scheme not in _DEFAULT_PORTS:
        raise BlobUrlRefused("blob_url must be an http or https URL")
    if "@" in parts.netloc:
        raise BlobUrlRefused("blob_url must not carry user information (user@host)")
    segments = parts.path.split("/")
    if "." in segments or ".." in segments or _ENCODED_SEPARATORS.search(parts.path):
        raise BlobUrlRefused("blob_url must not contain dot segments or encoded '.', '/' or '\\' in its path")
    host, effective_port = (parts.hostname or "").lower(), port or _DEFAULT_PORTS[parts.scheme]
    for account in accounts:
        same_origin = (account.scheme, account.host, account.port) == (parts.scheme, host, effective_port)
        if same_origin and parts.path.startswith(account.path) and len(parts.path) > len(account.path):
            return
    allowed = ", ".join(str(account) for account in accounts) or "none"
    raise BlobUrlRefused(
        f"blob_url {redact(url)} is not a blob of a storage account on the allow-list {ALLOW_LIST_SETTING} "
        f"(scheme, host and port as written; allowed: {allowed})"
    )


def redact(url: str) -> str:
    """The URL without its query string (SAS tokens are secrets)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


@cache
def _credential() -> Any:
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


def _input_retry() -> ExponentialRetry:
    return ExponentialRetry(**INPUT_READ.sdk_exponential())


INPUT_CONNECTION_TIMEOUT_SECONDS = 10


def _from_environment() -> tuple[bool, bool | str]:
    """Whether requests must read the environment per request, and what to verify TLS with.

    A session that trusts the environment (``trust_env``) looks up the proxy variables on every request, walking
    the whole environment twice per read. Without a proxy variable there is nothing to look up per request; the CA
    bundle the variables name (``REQUESTS_CA_BUNDLE``, then ``CURL_CA_BUNDLE``, as requests reads them) is read
    once here instead. With a proxy the session keeps reading the environment, for ``NO_PROXY`` to apply per URL.
    """
    if getproxies_environment():
        return True, True
    return False, os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True


class InputBlobs:
    """One worker's clients of input blobs. Every read goes over one HTTP session, so the connections are reused
    instead of each file opening (and the storage accepting) a new one, and through one SDK pipeline per account
    and kind of authorisation, built for the first blob and reused for the next: a blob's client then costs the
    parsing of its URL instead of a pipeline of a dozen policies, a configuration and an HTTP transport. Each
    request still carries its own authorisation: the SAS of its URL (the client appends the URL's query to
    every request it makes), or a token of the identity (DefaultAzureCredential) for a URL without a SAS.

    Without a proxy in the environment, the environment is read once, when the worker starts (see
    :func:`_from_environment`).
    """

    def __init__(self) -> None:
        use_environment, self._verify = _from_environment()
        self._connections = RequestsTransport(
            connection_timeout=INPUT_CONNECTION_TIMEOUT_SECONDS, use_env_settings=use_environment
        )
        self._connections.open()
        self._templates: dict[tuple[str, bool], BlobClient] = {}

    def client(self, url: str) -> BlobClient:
        """A client of the blob at ``url``; closing it leaves the worker's session and pipeline open."""
        parts = urlsplit(url)
        signed = "sig" in parse_qs(parts.query)
        credential = None if signed else _credential()
        template = self._templates.get((parts.netloc, signed))
        if template is None:
            template = BlobClient.from_blob_url(url, credential=credential, **self._options())
            self._templates[(parts.netloc, signed)] = template
            return template
        # The SDK's own get_blob_client hands a new client its parent's configuration and pipeline the same way.
        return BlobClient.from_blob_url(
            url,
            credential=credential,
            _configuration=template._config,
            _pipeline=template._pipeline,
        )

    def _options(self) -> dict[str, Any]:
        # The SDK's first GET fetches up to 32 MiB (max_single_get_size) and then re-slices that buffer piece
        # by piece; asking for the same size as the later pieces keeps what the download holds at one piece.
        return {
            "retry_policy": _input_retry(),
            "connection_timeout": INPUT_CONNECTION_TIMEOUT_SECONDS,
            "max_single_get_size": DOWNLOAD_PIECE_BYTES,
            "max_chunk_get_size": DOWNLOAD_PIECE_BYTES,
            "permit_redirects": False,  # a redirect could lead anywhere; the allow-list was checked for this URL only
            # Closing a blob's client closes its transport: this one leaves the worker's session open.
            "transport": RequestsTransport(
                session=self._connections.session,
                session_owner=False,
                connection_timeout=INPUT_CONNECTION_TIMEOUT_SECONDS,
                connection_verify=self._verify,
            ),
        }

    def close(self) -> None:
        self._connections.close()


class ResultsBlob:
    """One results blob written block by block (the ``BlockWriter`` port of the output sink)."""

    def __init__(self, client: BlobClient, account_key: str | None) -> None:
        self._client = client
        self._key = account_key

    def stage(self, block_id: str, data: bytes) -> None:
        self._client.stage_block(block_id, data, length=len(data))

    def commit(self, block_ids: list[str], content_type: str) -> None:
        self._client.commit_block_list(
            [BlobBlock(block_id) for block_id in block_ids], content_settings=ContentSettings(content_type=content_type)
        )

    @property
    def url(self) -> str:
        if self._key is None:
            return str(self._client.url)
        sas = generate_blob_sas(
            account_name=str(self._client.account_name),
            container_name=self._client.container_name,
            blob_name=self._client.blob_name,
            account_key=self._key,
            permission=BlobSasPermissions(read=True),
            expiry=datetime.now(UTC) + RESULT_SAS_TTL,
        )
        return f"{self._client.url}?{sas}"


class ResultsStore:
    """Factory of results blobs; one service client per store (stores are per worker thread)."""

    def __init__(self, settings: ScoringSettings) -> None:
        if settings.results_connection:
            self._service = BlobServiceClient.from_connection_string(settings.results_connection)
        elif settings.results_account_url:
            self._service = BlobServiceClient(settings.results_account_url, credential=_credential())
        else:
            raise ValueError("RESULTS_STORAGE_CONNECTION or RESULTS_STORAGE_ACCOUNT_URL is required")
        self._container = settings.results_container
        credential = self._service.credential
        self._key: str | None = getattr(credential, "account_key", None)
        self._container_checked = False

    def blob(self, name: str) -> ResultsBlob:
        if not self._container_checked:
            container = self._service.get_container_client(self._container)
            if not container.exists():
                try:
                    container.create_container()
                    logger.info("created results container %s", self._container)
                except ResourceExistsError:
                    pass  # another worker created it a moment ago
            self._container_checked = True
        return ResultsBlob(self._service.get_blob_client(self._container, name), self._key)
