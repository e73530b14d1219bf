"""HTTP ports: the scoring endpoint's sync route and the function app's request status endpoint."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import requests

from client.errors import ScoringRejected, ServiceError

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0


def _answer_text(response: requests.Response, limit: int = 300) -> str:
    text = " ".join(response.text.split())
    return text[:limit] + ("..." if len(text) > limit else "")


def _json(response: requests.Response, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise ServiceError(f"{what} answered {response.status_code} with a body that is not JSON") from None


def _rejection(response: requests.Response) -> ScoringRejected | None:
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("message"), str):
        return None
    rows = [r for r in body.get("row_errors") or [] if isinstance(r, dict)]
    code = body.get("code")
    return ScoringRejected(response.status_code, body["message"], code if isinstance(code, str) else None, rows)


class HttpSyncScoring:
    """``POST {SCORING_URI}`` with ``{"data": rows}``, the key as a bearer token (as AML online endpoints expect)."""

    def __init__(self, uri: str, key: str | None, deployment: str | None, timeout: float) -> None:
        self._uri, self._timeout = uri, timeout
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if key:
            self._headers["Authorization"] = f"Bearer {key}"
        if deployment:
            self._headers["azureml-model-deployment"] = deployment

    def score(self, rows: list[dict[str, Any]]) -> Any:
        what = f"scoring endpoint {self._uri} (setting SCORING_URI)"
        try:
            response = requests.post(
                self._uri, json={"data": rows}, headers=self._headers, timeout=(CONNECT_TIMEOUT, self._timeout)
            )
        except requests.Timeout:
            raise ServiceError(f"{what} did not answer within {self._timeout:g} s") from None
        except requests.RequestException as exc:
            raise ServiceError(f"cannot reach {what}: {type(exc).__name__}") from None
        if response.status_code in (401, 403):
            raise ServiceError(f"{what} refused the key ({response.status_code}); check SCORING_KEY")
        if 400 <= response.status_code < 500 and (rejected := _rejection(response)) is not None:
            raise rejected
        if response.status_code >= 400:
            raise ServiceError(f"{what} answered {response.status_code}: {_answer_text(response)}")
        return _json(response, what)


class HttpStatusSource:
    """``GET {FUNCTIONS_URL}/api/requests/{id}`` with the function key in ``x-functions-key``."""

    def __init__(self, base_url: str, key: str | None, timeout: float = 30.0) -> None:
        self._base, self._timeout = base_url.rstrip("/"), timeout
        self._headers = {"Accept": "application/json"}
        if key:
            self._headers["x-functions-key"] = key
        self._session = requests.Session()

    def get(self, request_id: str) -> dict[str, Any] | None:
        url = f"{self._base}/api/requests/{quote(request_id, safe='')}"
        what = f"function app {self._base} (setting FUNCTIONS_URL)"
        try:
            response = self._session.get(url, headers=self._headers, timeout=(CONNECT_TIMEOUT, self._timeout))
        except requests.RequestException as exc:
            raise ServiceError(f"cannot reach {what}: {type(exc).__name__}") from None
        if response.status_code == 404:
            return None
        if response.status_code in (401, 403):
            raise ServiceError(f"{what} refused the key ({response.status_code}); check FUNCTIONS_KEY")
        if response.status_code >= 400:
            raise ServiceError(f"{what} answered {response.status_code}: {_answer_text(response)}")
        record = _json(response, what)
        if not isinstance(record, dict):
            raise ServiceError(f"{what} answered with JSON that is not an object")
        return record
