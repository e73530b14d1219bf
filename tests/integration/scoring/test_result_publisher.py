"""The result publisher against the Service Bus emulator, driven by the real azure-servicebus SDK: the results of
one job go out in one message batch per reply session, a batch that is full is sent and the next one started,
a result too large for a message of its own is refused with a clear error after the results before it went
out, and every result arrives once, on its own session, with its own message id."""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence

import pytest

from scoring.service.publisher import Outgoing, PublishError, ServiceBusPublisher
from scoring.service.settings import ScoringSettings
from shared.contracts import DataFormat, InferenceResult, OutputRef, ResultStatus
from tests.fixtures.servicebus import ServiceBusEmulator
from tests.support.scoring import RESULT_TOPIC, receive_results, result_of

pytestmark = pytest.mark.slow


def _settings(connection: str) -> ScoringSettings:
    return ScoringSettings.from_env(
        {
            "AZUREML_MODEL_DIR": "/unused",
            "RESULT_SERVICEBUS_CONNECTION": connection,
            "RESULTS_STORAGE_CONNECTION": "unused",
            "RESULT_TOPIC": RESULT_TOPIC,
        }
    )


def _result(name: str, output_bytes: int = 100) -> InferenceResult:
    output = OutputRef.inline(os.urandom(output_bytes), DataFormat.CSV, None)
    return InferenceResult(
        request_id=f"{name}-{uuid.uuid4().hex[:8]}",
        status=ResultStatus.SUCCEEDED,
        input_name=f"{name}.csv",
        model="default",
        output=output,
        rows_scored=1,
    )


def _publish(connection: str, results: Sequence[Outgoing]) -> tuple[list[list[str]], BaseException | None]:
    """The request ids of each send the broker took, in order, and the error publishing ended with."""
    sends: list[list[str]] = []
    error: BaseException | None = None
    with ServiceBusPublisher(_settings(connection)) as publisher:
        try:
            publisher.publish(results, lambda items: sends.append([i.result.request_id for i in items]))
        except PublishError as exc:
            error = exc
    return sends, error


def test_the_results_of_a_job_go_out_in_one_batch_per_session(servicebus: ServiceBusEmulator) -> None:
    one, other = f"s-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
    results = [Outgoing(_result("a"), one), Outgoing(_result("b"), other), Outgoing(_result("c"), one)]
    sends, error = _publish(servicebus.connection_string, results)
    a, b, c = (item.result.request_id for item in results)
    assert error is None and sends == [[a, c], [b]]
    received = receive_results(servicebus.connection_string, one, count=3, wait=5)
    assert [result_of(m).request_id for m in received] == [a, c]
    assert [m.message_id for m in received] == [results[0].result.message_id, results[2].result.message_id]
    assert {m.session_id for m in received} == {one}
    assert [result_of(m).request_id for m in receive_results(servicebus.connection_string, other, wait=5)] == [b]


def test_a_full_batch_is_sent_and_the_next_one_started(servicebus: ServiceBusEmulator) -> None:
    session = f"s-{uuid.uuid4().hex[:8]}"
    # 100 KB of output is about 134 KB in the message (base64): two do not fit in one batch of 256 KB.
    results = [Outgoing(_result(name, 100_000 if name in "ab" else 100), session) for name in "abcd"]
    sends, error = _publish(servicebus.connection_string, results)
    a, b, c, d = (item.result.request_id for item in results)
    assert error is None and sends == [[a], [b, c, d]]
    received = receive_results(servicebus.connection_string, session, count=5, wait=5)
    assert [result_of(m).request_id for m in received] == [a, b, c, d]
    assert result_of(received[0]).output == results[0].result.output


def test_a_result_too_large_for_a_message_is_refused_after_the_ones_before_it(servicebus: ServiceBusEmulator) -> None:
    session = f"s-{uuid.uuid4().hex[:8]}"
    results = [Outgoing(_result("a"), session), Outgoing(_result("huge", 300_000), session)]
    sends, error = _publish(servicebus.connection_string, results)
    assert sends == [[results[0].result.request_id]]
    assert isinstance(error, PublishError) and results[1].result.request_id in str(error)
    assert "does not fit in one message" in str(error)
    received = receive_results(servicebus.connection_string, session, count=2, wait=3)
    assert [result_of(m).request_id for m in received] == [results[0].result.request_id]
