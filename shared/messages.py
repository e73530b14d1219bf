"""The request messages the use cases publish on the request topic (first attempts, resubmissions, retries)."""

from __future__ import annotations

from dataclasses import replace

from shared.contracts import InferenceRequest
from shared.ports import OutgoingMessage

PROP_SCORING_RETRY = "scoring_retry"


def request_message(request: InferenceRequest) -> OutgoingMessage:
    return OutgoingMessage(
        body=request.to_json(),
        message_id=request.message_id,
        session_id=request.session_id,
        application_properties=request.application_properties(),
        content_type="application/json",
    )


def retry_message(request: InferenceRequest, retry: int) -> OutgoingMessage:
    """The copy of a request scheduled for a later try after the endpoint was unavailable."""
    message = request_message(request)
    return replace(
        message,
        message_id=request.retry_message_id(retry),
        application_properties={**message.application_properties, PROP_SCORING_RETRY: retry},
    )
