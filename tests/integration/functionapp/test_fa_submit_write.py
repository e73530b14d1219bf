"""submit_blob, write_result, reconcile and request_status called with real `azure.functions` objects against
Azurite and the Service Bus emulator."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob_types
import pytest
from azure.servicebus import ServiceBusClient, ServiceBusMessage

from devstack.functions_host.blob_binding import SdkTypeArguments, reference
from shared import reconcile as use_case
from shared.bus import AzureMessageBus
from shared.contracts import (
    DataFormat,
    ErrorInfo,
    InferenceRequest,
    InferenceResult,
    OutputRef,
    ResultStatus,
    RowError,
    derive_request_id,
    iso,
)
from shared.ledger import Ledger, accepted, succeeded
from shared.ports import BlobInfo
from shared.settings import DATA_STORAGE, get_settings
from shared.storage import AzureBlobStore
from shared.triggers.reconcile import reconcile
from shared.triggers.request_status import request_status
from shared.triggers.submit_blob import submit_blob
from shared.triggers.write_result import WriteBatchFailed, write_result
from shared.wiring import services

from .conftest import AppEnv
from .fa_support import set_env


def trigger(env: AppEnv, name: str) -> None:
    """Call submit_blob with what the worker passes for its SDK-type parameter: a BlobClient that the
    extension's converter builds from the reference the host sends (connection, container, blob name)."""
    client = SdkTypeArguments().argument(
        "submit_blob", "client", "blobTrigger", blob_types.BlobClient, reference(DATA_STORAGE, env.input, name)
    )
    submit_blob.build().get_user_function()(client)


def result_message(result: InferenceResult, session: str = "s1") -> func.ServiceBusMessage:
    props: dict[str, Any] = dict(result.application_properties())
    return func.servicebus.ServiceBusMessage(
        body=result.to_json(),
        message_id=result.message_id,
        session_id=session,
        content_type="application/json",
        delivery_count=1,
        application_properties=props,
        user_properties=props,
    )


def test_submit_blob_publishes_to_the_models_subscription(fa_env: AppEnv) -> None:
    etag = fa_env.upload("churn-v2/batch-1.csv", b"a,b\n1,2\n", {"session_id": "client-42"})
    trigger(fa_env, "churn-v2/batch-1.csv")
    request_id = derive_request_id(fa_env.input, "churn-v2/batch-1.csv", etag)
    message = fa_env.receive("scoring-churn-v2", lambda m: m.message_id == request_id)
    assert message is not None, "the request did not reach the churn-v2 subscription"
    assert message.session_id == "client-42"
    assert message.application_properties is not None
    assert message.application_properties[b"model"] == b"churn-v2"
    assert message.application_properties[b"content_type"] == b"text/csv"
    request = InferenceRequest.from_json(b"".join(message.body))
    assert (request.blob_name, request.size, request.model) == ("churn-v2/batch-1.csv", 8, "churn-v2")
    assert fa_env.ledger_record(request_id)["state"] == "submitted"
    # The default route's subscription does not get it.
    assert fa_env.receive("scoring", lambda m: m.message_id == request_id, timeout=2) is None


def test_submit_blob_refire_is_deduplicated_by_the_topic(fa_env: AppEnv) -> None:
    etag = fa_env.upload("again.jsonl", b'{"a": 1}\n')
    trigger(fa_env, "again.jsonl")
    trigger(fa_env, "again.jsonl")
    request_id = derive_request_id(fa_env.input, "again.jsonl", etag)
    assert fa_env.receive("scoring", lambda m: m.message_id == request_id) is not None
    assert fa_env.receive("scoring", lambda m: m.message_id == request_id, timeout=2) is None


@pytest.mark.parametrize(("name", "data", "code"), [("notes.txt", b"hello", "unsupported_format"),
                                                     ("empty.csv", b"", "empty_file"),
                                                     ("big.csv", b"x" * 1_000_001, "too_large")])  # fmt: skip
def test_submit_blob_bad_file_gets_an_error_record(fa_env: AppEnv, name: str, data: bytes, code: str) -> None:
    etag = fa_env.upload(name, data)
    trigger(fa_env, name)
    document = json.loads(fa_env.read(fa_env.output, f"errors/{name}.error.json"))
    assert document["error"]["code"] == code
    record = fa_env.ledger_record(derive_request_id(fa_env.input, name, etag))
    assert record["state"] == "failed" and record["error_location"] == f"{fa_env.output}/errors/{name}.error.json"


def test_write_result_inline_is_idempotent(fa_env: AppEnv) -> None:
    output = b"a,b,prediction,probability\n1,2,0,0.25\n"
    result = InferenceResult(request_id="1" * 32, status=ResultStatus.SUCCEEDED, input_name="d/x.csv", model="churn",
                             rows_scored=1, output=OutputRef.inline(output, DataFormat.CSV, None))  # fmt: skip
    fn = write_result.build().get_user_function()
    fn([result_message(result)])
    first = fa_env.blob_service.get_blob_client(fa_env.output, "d/x.csv").get_blob_properties()
    fn([result_message(result)])
    second = fa_env.blob_service.get_blob_client(fa_env.output, "d/x.csv").get_blob_properties()
    assert first.etag == second.etag and fa_env.read(fa_env.output, "d/x.csv") == output
    assert fa_env.names(fa_env.output) == ["d/x.csv"]
    record = fa_env.ledger_record("1" * 32)
    assert record["state"] == "succeeded" and record["output_location"] == f"{fa_env.output}/d/x.csv"


def test_write_result_writes_a_batch_and_raises_for_the_result_it_could_not_write(fa_env: AppEnv) -> None:
    """The host abandons a batch whose function raised; the results written already are found in place when
    the batch comes again."""

    def ok(request_id: str, name: str) -> InferenceResult:
        output = OutputRef.inline(f"a,prediction\n{name},1\n".encode(), DataFormat.CSV, None)
        return InferenceResult(request_id=request_id, status=ResultStatus.SUCCEEDED, input_name=name, model="churn",
                               rows_scored=1, output=output)  # fmt: skip

    good = [ok("6" * 32, "b/one.csv"), ok("7" * 32, "b/two.csv")]
    bad = ok("8" * 32, "../escape.csv")
    fn = write_result.build().get_user_function()
    with pytest.raises(WriteBatchFailed, match="1 of 3 results not written"):
        fn([result_message(good[0]), result_message(bad), result_message(good[1])])
    assert fa_env.names(fa_env.output) == ["b/one.csv", "b/two.csv"]
    etags = [fa_env.blob_service.get_blob_client(fa_env.output, n).get_blob_properties().etag
             for n in ("b/one.csv", "b/two.csv")]  # fmt: skip
    fn([result_message(r) for r in good])
    assert etags == [fa_env.blob_service.get_blob_client(fa_env.output, n).get_blob_properties().etag
                     for n in ("b/one.csv", "b/two.csv")]  # fmt: skip
    assert fa_env.ledger_record("7" * 32)["state"] == "succeeded"


def staged_output(env: AppEnv, container: str, name: str, data: bytes, request_id: str) -> InferenceResult:
    """A succeeded result whose output the endpoint staged at ``container/name`` of the Azurite account."""
    if not env.blob_service.get_container_client(container).exists():
        env.blob_service.create_container(container)
    blob = env.blob_service.get_blob_client(container, name)
    blob.upload_blob(data, overwrite=True)
    ref = OutputRef(format=DataFormat.CSV, compression=None, size=len(data), sha256=hashlib.sha256(data).hexdigest(),
                    blob_url=blob.url)  # fmt: skip
    return InferenceResult(request_id=request_id, status=ResultStatus.SUCCEEDED, input_name="big.csv",
                           model="churn", rows_scored=40_000, output=ref)  # fmt: skip


def test_write_result_copies_a_staged_output(fa_env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, RESULTS_CONTAINER=fa_env.input + "-results")
    data = b"a,prediction,probability\n" + b"1,1,0.75\n" * 40_000
    result = staged_output(fa_env, fa_env.input + "-results", f"{'2' * 32}/1/big.csv", data, "2" * 32)
    write_result.build().get_user_function()([result_message(result)])
    assert fa_env.read(fa_env.output, "big.csv") == data
    assert fa_env.ledger_record("2" * 32)["rows_scored"] == 40_000
    assert fa_env.names(fa_env.input + "-results") == []  # the staged output is removed once written


def test_write_result_copies_nothing_from_outside_the_requests_staged_outputs(
    fa_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(monkeypatch, RESULTS_CONTAINER=fa_env.input + "-results")
    secret = b"a,b\n" + b"not for the output container\n" * 100
    rid = "4" * 32
    result = staged_output(fa_env, fa_env.input, f"{rid}/1/big.csv", secret, rid)  # the input container
    write_result.build().get_user_function()([result_message(result)])
    assert fa_env.names(fa_env.output) == ["errors/big.csv.error.json"]
    document = json.loads(fa_env.read(fa_env.output, "errors/big.csv.error.json"))
    assert document["error"]["code"] == "blob_url_not_allowed"
    assert fa_env.ledger_record(rid)["state"] == "failed"
    assert fa_env.read(fa_env.input, f"{rid}/1/big.csv") == secret  # nothing copied, nothing deleted


def test_write_result_failure_writes_the_error_record(fa_env: AppEnv) -> None:
    result = InferenceResult(request_id="3" * 32, status=ResultStatus.FAILED, input_name="bad.csv", model="churn",
                             rows_failed=1, row_errors=(RowError(1, "tenure: expected a number"),),
                             error=ErrorInfo("no_valid_rows", "no row could be scored"))  # fmt: skip
    write_result.build().get_user_function()([result_message(result)])
    document = json.loads(fa_env.read(fa_env.output, "errors/bad.csv.error.json"))
    assert document["error"]["code"] == "no_valid_rows"
    assert document["row_errors"] == [{"row": 1, "message": "tenure: expected a number"}]
    assert fa_env.ledger_record("3" * 32)["state"] == "failed"


def test_reconcile_resubmits_an_overdue_request(fa_env: AppEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, RESULT_DEADLINE_MINUTES="1", MAX_RESUBMITS="1")
    etag = fa_env.upload("late.csv", b"a\n1\n", {"session_id": "s-late"})
    trigger(fa_env, "late.csv")
    request_id = derive_request_id(fa_env.input, "late.csv", etag)
    message = fa_env.receive("scoring", lambda m: m.message_id == request_id)
    assert message is not None
    request = InferenceRequest.from_json(b"".join(message.body))
    ledger = Ledger(AzureBlobStore(get_settings().data_storage), fa_env.ledger)
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    ledger.advance(request_id, accepted(request, long_ago, 0), now=long_ago)  # accepted five minutes ago
    reconcile.build().get_user_function()(func.timer.TimerRequest(past_due=False))
    again = fa_env.receive("scoring", lambda m: m.message_id == f"{request_id}:2")
    assert again is not None and again.session_id == "s-late"
    assert InferenceRequest.from_json(b"".join(again.body)).attempt == 2
    record = fa_env.ledger_record(request_id)
    assert (record["state"], record["attempt"]) == ("submitted", 2)
    # The resubmitted attempt is overdue too and no resubmits are left: result_timeout.
    ledger.advance(request_id, lambda r: r and replace(r, updated_at=iso(long_ago)), now=long_ago)
    reconcile.build().get_user_function()(func.timer.TimerRequest(past_due=True))
    record = fa_env.ledger_record(request_id)
    assert (record["state"], record["error_code"]) == ("failed", "result_timeout")
    assert json.loads(fa_env.read(fa_env.output, "errors/late.csv.error.json"))["error"]["code"] == "result_timeout"


def test_reconcile_clears_a_success_by_the_output_its_listing_names(
    fa_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(monkeypatch, RESULT_DEADLINE_MINUTES="1")
    name = "done/ä b%20,c.csv"
    etag = fa_env.upload(name, b"a\n1\n", {"session_id": "s-done"})
    trigger(fa_env, name)
    request_id = derive_request_id(fa_env.input, name, etag)
    blobs = AzureBlobStore(get_settings().data_storage)
    ledger = Ledger(blobs, fa_env.ledger)
    base = ledger.get(request_id)
    assert base is not None
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    location = f"{fa_env.output}/{name}"
    ledger.advance(request_id, succeeded(base, long_ago, location, 1, 0, iso(long_ago)), now=long_ago)
    blobs.write(fa_env.output, name, b"a,prediction\n1,0\n", content_type="text/csv")
    # The location travels through Azurite's metadata and listing unchanged.
    [listed] = [m for m in ledger.inflight() if m.request_id == request_id]
    assert listed.listed_output == location
    reconcile.build().get_user_function()(func.timer.TimerRequest(past_due=False))
    assert request_id not in {m.request_id for m in ledger.inflight()}
    assert fa_env.ledger_record(request_id)["state"] == "succeeded"


class CountingStore(AzureBlobStore):
    """Our storage adapter, noting the blobs it reads the properties of."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.read_properties: list[str] = []

    def properties(self, container: str, name: str) -> BlobInfo:
        self.read_properties.append(name)
        return super().properties(container, name)


def test_reconcile_finds_a_folders_outputs_with_one_listing_and_resubmits_a_lost_one(
    fa_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_env(monkeypatch, RESULT_DEADLINE_MINUTES="1")
    settings = get_settings()
    blobs = CountingStore(settings.data_storage)
    ledger = Ledger(blobs, fa_env.ledger)
    long_ago = datetime.now(UTC) - timedelta(minutes=5)
    names, ids = ["day/ä 1.csv", "day/ä 2.csv", "day/ä 3.csv"], []
    for name in names:
        ids.append(derive_request_id(fa_env.input, name, fa_env.upload(name, b"a\n1\n", {"session_id": "s-day"})))
        trigger(fa_env, name)
        base = ledger.get(ids[-1])
        assert base is not None
        location = f"{fa_env.output}/{name}"
        ledger.advance(ids[-1], succeeded(base, long_ago, location, 1, 0, iso(long_ago)), now=long_ago)
    for name in names[:2]:  # the third output is gone, as Azurite can forget it after kill -9
        blobs.write(fa_env.output, name, b"a,prediction\n1,0\n", content_type="text/csv")
    blobs.read_properties.clear()
    report = use_case.reconcile(settings=settings, blobs=blobs, bus=AzureMessageBus(settings.service_bus),
                                ledger=ledger, now=datetime.now(UTC))  # fmt: skip
    assert sorted(report.cleaned) == sorted(ids[:2]) and report.reopened == [ids[2]]
    assert set(blobs.read_properties) == {names[2]}  # the two found by the listing were not read one by one
    assert fa_env.receive("scoring", lambda m: m.message_id == f"{ids[2]}:2") is not None
    assert {m.request_id: m.attempt for m in ledger.inflight() if m.request_id in ids} == {ids[2]: 2}


def test_write_result_batch_lists_the_folders_error_records_and_removes_an_older_versions(
    fa_env: AppEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file failed, was uploaded again, and its new version's success comes in one batch with two others of its
    folder: the older version's error record goes, the three outputs are written, and only the error record the
    folder's listing showed is looked up one by one."""
    names = ["v/ä 1.csv", "v/ä 2.csv", "v/ä 3.csv"]
    old_id = derive_request_id(fa_env.input, names[1], fa_env.upload(names[1], b"a\nx\n", {"session_id": "s-v"}))
    trigger(fa_env, names[1])
    failed = InferenceResult(request_id=old_id, status=ResultStatus.FAILED, input_name=names[1], model="default",
                             error=ErrorInfo("no_valid_rows", "no row could be scored"))  # fmt: skip
    fn = write_result.build().get_user_function()
    fn([result_message(failed, "s-v")])
    assert fa_env.names(fa_env.output) == [f"errors/{names[1]}.error.json"]
    ids = []
    for name in names:
        ids.append(derive_request_id(fa_env.input, name, fa_env.upload(name, b"a\n1\n", {"session_id": "s-v"})))
        trigger(fa_env, name)
    assert old_id not in ids
    blobs = CountingStore(get_settings().data_storage)
    monkeypatch.setattr("shared.triggers.write_result.services", lambda: services(blobs=blobs))
    results = [InferenceResult(request_id=rid, status=ResultStatus.SUCCEEDED, input_name=name, model="default",
                               rows_scored=1, output=OutputRef.inline(b"a,prediction\n1,0\n", DataFormat.CSV, None))
               for rid, name in zip(ids, names, strict=True)]  # fmt: skip
    fn([result_message(r, "s-v") for r in results])
    assert fa_env.names(fa_env.output) == names
    assert [fa_env.ledger_record(rid)["state"] for rid in ids] == ["succeeded"] * 3
    assert [n for n in blobs.read_properties if n.startswith("errors/")] == [f"errors/{names[1]}.error.json"]


@pytest.mark.parametrize("check", ["true", "false"])
def test_the_writer_marks_a_success_for_reconcile_only_where_outputs_are_checked(
    fa_env: AppEnv, monkeypatch: pytest.MonkeyPatch, check: str
) -> None:
    set_env(monkeypatch, RECONCILE_CHECK_OUTPUTS=check)
    rid = ("8" if check == "true" else "9") * 32
    result = InferenceResult(request_id=rid, status=ResultStatus.SUCCEEDED, input_name=f"checked-{check}.csv",
                             model="churn", rows_scored=1,
                             output=OutputRef.inline(b"a,prediction\n1,0\n", DataFormat.CSV, None))  # fmt: skip
    write_result.build().get_user_function()([result_message(result)])
    assert fa_env.read(fa_env.output, f"checked-{check}.csv") == b"a,prediction\n1,0\n"
    blob = fa_env.blob_service.get_blob_client(fa_env.ledger, f"requests/{rid}.json").get_blob_properties()
    marked = blob.metadata.get("inflight") == "true"
    assert blob.metadata["state"] == "succeeded" and marked == (check == "true")


def test_request_status_reports_the_ledger_state(fa_env: AppEnv) -> None:
    etag = fa_env.upload("status.csv", b"a\n1\n")
    trigger(fa_env, "status.csv")
    request_id = derive_request_id(fa_env.input, "status.csv", etag)
    fn = request_status.build().get_user_function()

    def get(rid: str) -> func.HttpResponse:
        req = func.HttpRequest(method="GET", url=f"http://localhost/api/requests/{rid}", body=b"",
                               route_params={"request_id": rid})  # fmt: skip
        return fn(req)

    response = get(request_id)
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = json.loads(response.get_body())
    assert (body["request_id"], body["state"], body["input_name"]) == (request_id, "submitted", "status.csv")
    assert body["submitted_at"] and body["output_location"] is None
    assert get("f" * 32).status_code == 404
    assert get("../../etc").status_code == 404
    fa_env.receive("scoring", lambda m: m.message_id == request_id)


def test_result_published_on_the_bus_reaches_the_writer_subscription(fa_env: AppEnv) -> None:
    """The writer's trigger binding (session-enabled `writer`) receives what the scoring service publishes."""
    output = b'{"a": 1, "prediction": 1, "probability": 0.5}\n'
    result = InferenceResult(request_id="4" * 32, status=ResultStatus.SUCCEEDED, input_name="s.jsonl", model="churn",
                             rows_scored=1, output=OutputRef.inline(output, DataFormat.JSONL, None))  # fmt: skip
    session = "session-" + fa_env.input
    with ServiceBusClient.from_connection_string(fa_env.bus_connection) as client:
        with client.get_topic_sender("inference-results") as sender:
            sender.send_messages(ServiceBusMessage(result.to_json(), message_id=result.message_id, session_id=session,
                                                   application_properties=result.application_properties()))  # type: ignore[arg-type]  # fmt: skip
        with client.get_subscription_receiver("inference-results", "writer", session_id=session) as receiver:
            [received] = receiver.receive_messages(max_message_count=1, max_wait_time=10)
            from .fa_support import function_message

            write_result.build().get_user_function()([function_message(received)])
            receiver.complete_message(received)
    assert fa_env.read(fa_env.output, "s.jsonl") == output


@pytest.mark.parametrize(("name", "record"), [("a/../../b.csv", "errors/a/_/_/b.csv.error.json"),
                                              ("c\\d.csv", "errors/c_d.csv.error.json")])  # fmt: skip
def test_submit_blob_path_tricks_get_an_error_record_under_a_safe_name(fa_env: AppEnv, name: str, record: str) -> None:
    trigger(fa_env, name)  # no request with such a name reaches storage; the error record gets a safe name
    document = json.loads(fa_env.read(fa_env.output, record))
    assert document["error"]["code"] == "invalid_name" and document["input"]["name"] == name
    assert fa_env.ledger_record(derive_request_id(fa_env.input, name, ""))["state"] == "failed"
