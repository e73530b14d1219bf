"""Scoring endpoint adapters (:class:`shared.ports.ScoringEndpoint`).

:class:`HttpScoringEndpoint` POSTs JSON to the endpoint's scoring URI. Each POST uses its own connection (no
``requests.Session`` kept), so nothing is shared between the worker's threads.
:class:`UnconfiguredEndpoint` stands in for a route whose endpoint settings are missing or unresolved (the
endpoint is not deployed yet): it answers like an unreachable endpoint, so the request is retried later.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import requests

from shared.ports import EndpointReply
from shared.settings import EndpointSettings
from shared.telemetry import pipeline

logger = logging.getLogger(__name__)

_MAX_BODY_KEPT = 2000


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class UnconfiguredEndpoint:
    """Answers every POST as unreachable (status 0), saying which setting is missing."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def post(self, body: bytes) -> EndpointReply:
        return EndpointReply(status=0, body=f"scoring endpoint not configured: {self.reason}"[:_MAX_BODY_KEPT])


class HttpScoringEndpoint:
    def __init__(self, endpoint: EndpointSettings) -> None:
        self._route = endpoint
        self._timeout = (endpoint.connect_timeout_seconds, endpoint.read_timeout_seconds)

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._route.key:
            headers["Authorization"] = f"Bearer {self._route.key}"
        if self._route.deployment:
            headers["azureml-model-deployment"] = self._route.deployment
        return headers

    def post(self, body: bytes) -> EndpointReply:
        with pipeline.endpoint_call(self._route.model, self._route.uri) as trace_headers:
            reply = self._post(body, {**self._headers(), **trace_headers})
            pipeline.endpoint_answered(self._route.model, reply.status)
            return reply

    def _post(self, body: bytes, headers: dict[str, str]) -> EndpointReply:
        try:
            response = requests.post(self._route.uri, data=body, headers=headers, timeout=self._timeout)
        except requests.RequestException as exc:
            logger.warning("scoring endpoint %s unreachable: %s", self._route.uri, exc)
            return EndpointReply(status=0, body=f"{type(exc).__name__}: {exc}"[:_MAX_BODY_KEPT])
        with response:
            return EndpointReply(
                status=response.status_code,
                # An accepted batch's answer names every file, so it is kept whole; error bodies are cut short.
                body=response.text if response.ok else response.text[:_MAX_BODY_KEPT],
                retry_after_seconds=parse_retry_after(response.headers.get("Retry-After")),
            )
