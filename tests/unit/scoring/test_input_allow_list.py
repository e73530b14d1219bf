"""The scoring service reads input only from the storage accounts it is configured for.

Two real HTTP servers on loopback record every request they get: ``allowed`` is the configured input
account (``INPUT_STORAGE_ACCOUNT_URLS``, Azurite-style path ``/devstoreaccount1``), ``elsewhere`` stands
for anything else reachable from the endpoint. Async requests naming URLs that break the allow-list in
every way we know of (internal addresses, other hosts, ports and schemes, names that resolve to loopback,
user information, numeric host forms, path tricks, characters parsers disagree on) are answered 400 at
once with code ``blob_url_not_allowed`` and the rule, and neither server sees a single request. A URL on
the allow-list that answers with a redirect is read once and the redirect is not followed. The function
app turns the 400 into that file's error record (``classify_rejection``). An input the request carried
(``input_b64``: a small file ``submit_blob`` read) is scored without a request to either server.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import pytest

from scoring.examples.churn.sample import frame
from scoring.examples.files import to_csv
from scoring.service.app import ScoringService
from scoring.service.dispatcher import Dispatcher
from scoring.service.job import ScoringJob
from scoring.service.model import load_model
from scoring.service.publisher import Outgoing, Sent
from scoring.service.settings import ScoringSettings, SettingsError
from scoring.service.storage import BlobUrlRefused, InputAccount, check_input_url, input_accounts
from shared.contracts import AsyncScoringRequest, DataFormat, ErrorCode, InferenceResult, ReplyTo, ResultStatus
from shared.ports import EndpointReply
from shared.retry import RESULT_PUBLISH
from shared.score import classify_rejection
from tests.support.wait import wait_until

ACCOUNT = "devstoreaccount1"
SAS = "?sv=2024-08-04&sr=b&sp=r&sig=c2lnbmF0dXJl"


class Recorder:
    """A loopback HTTP server that records each request; ``redirect_to`` makes it answer 302 there."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        self.redirect_to: str | None = None
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.hits.append(f"GET {self.path}")
                if recorder.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", recorder.redirect_to)
                else:
                    self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_HEAD = do_POST = do_PUT = do_GET

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    allowed, elsewhere = Recorder(), Recorder()
    try:
        yield allowed, elsewhere
    finally:
        allowed.close()
        elsewhere.close()


class Published:
    """Our ResultPublisher port, keeping what would go to Service Bus."""

    def __init__(self) -> None:
        self.results: list[InferenceResult] = []

    def publish(self, results: Sequence[Outgoing], sent: Sent) -> None:
        self.results.extend(item.result for item in results)
        sent(results)

    def __enter__(self) -> Published:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        return None


class NoResults:
    def blob(self, name: str) -> object:
        raise AssertionError("nothing is scored in these tests")


def make_service(model_dir: Path, allowed: Recorder) -> tuple[ScoringService, Published]:
    settings = ScoringSettings.from_env(
        {
            "AZUREML_MODEL_DIR": str(model_dir),
            "RESULT_SERVICEBUS_CONNECTION": "Endpoint=sb://unused",
            "RESULTS_STORAGE_CONNECTION": "UseDevelopmentStorage=true",
            "INPUT_STORAGE_ACCOUNT_URLS": f"http://127.0.0.1:{allowed.port}/{ACCOUNT}",
        }
    )
    model = load_model(model_dir)
    published = Published()
    dispatcher = Dispatcher(
        workers=1,
        queue_size=4,
        dedupe_entries=16,
        retry_after_seconds=1,
        publish_retry=RESULT_PUBLISH.with_tries(1),
        make_processor=lambda: ScoringJob(settings, model, NoResults().blob).run,  # type: ignore[arg-type]
        make_publisher=lambda: published,
    )
    return ScoringService(settings, model, dispatcher), published


def body(url: str, request_id: str) -> bytes:
    return AsyncScoringRequest(
        request_id=request_id,
        blob_url=url,
        reply=ReplyTo(topic="inference-results", session_id="s"),
        input_name="in/customers.csv",
        format=DataFormat.CSV,
    ).to_json()


def refused_urls(allowed: int, elsewhere: int) -> list[str]:
    good_path = f"/{ACCOUNT}/input/customers.csv{SAS}"
    return [
        # internal addresses and other ports on the allowed host
        f"http://127.0.0.1:{elsewhere}{good_path}",
        f"http://169.254.169.254/metadata/instance{SAS}",
        f"http://10.0.0.1:{allowed}{good_path}",
        f"http://127.0.0.1{good_path}",
        f"http://127.0.0.1:80{good_path}",
        # other hosts and schemes
        f"http://example.com:{allowed}{good_path}",
        f"https://127.0.0.1:{allowed}{good_path}",
        f"ftp://127.0.0.1:{allowed}{good_path}",
        "file:///etc/passwd",
        f"//127.0.0.1:{allowed}{good_path}",
        # names that resolve to loopback
        f"http://localhost:{allowed}{good_path}",
        f"http://LOCALHOST:{allowed}{good_path}",
        f"http://localhost.:{allowed}{good_path}",
        f"http://127.0.0.1.:{allowed}{good_path}",
        f"http://127.0.0.1.nip.io:{allowed}{good_path}",
        # user information
        f"http://127.0.0.1:{allowed}@127.0.0.1:{elsewhere}{good_path}",
        f"http://allowed@127.0.0.1:{elsewhere}{good_path}",
        f"http://user:pass@127.0.0.1:{allowed}{good_path}",
        f"http://127.0.0.1:{allowed}%40127.0.0.1:{elsewhere}{good_path}",
        # numeric host forms of 127.0.0.1
        f"http://2130706433:{allowed}{good_path}",
        f"http://0x7f000001:{allowed}{good_path}",
        f"http://0177.0.0.1:{allowed}{good_path}",
        f"http://0x7f.0.0.1:{allowed}{good_path}",
        f"http://127.1:{allowed}{good_path}",
        f"http://127.0.0.01:{allowed}{good_path}",
        f"http://[::1]:{allowed}{good_path}",
        f"http://[::ffff:127.0.0.1]:{allowed}{good_path}",
        f"http://[0:0:0:0:0:ffff:7f00:1]:{allowed}{good_path}",
        # ports that parse differently
        f"http://127.0.0.1:{allowed}:{elsewhere}{good_path}",
        f"http://127.0.0.1:{elsewhere}0{good_path}",
        f"http://127.0.0.1:+{allowed}{good_path}",
        # paths outside the account
        f"http://127.0.0.1:{allowed}/devstoreaccount2/input/customers.csv{SAS}",
        f"http://127.0.0.1:{allowed}/{ACCOUNT}/../devstoreaccount2/input/x.csv{SAS}",
        f"http://127.0.0.1:{allowed}/{ACCOUNT}/%2e%2e/devstoreaccount2/input/x.csv{SAS}",
        f"http://127.0.0.1:{allowed}/{ACCOUNT}%2f..%2fdevstoreaccount2/input/x.csv{SAS}",
        f"http://127.0.0.1:{allowed}/{ACCOUNT}{SAS}",
        f"http://127.0.0.1:{allowed}/{ACCOUNT}x/input/customers.csv{SAS}",
        # characters parsers disagree on
        f"http://127.0.0.1:{allowed}\\@127.0.0.1:{elsewhere}{good_path}",
        f"http://127.0.0.1:{elsewhere}\\.127.0.0.1:{allowed}{good_path}",
        f"http://127.0.0.1:{allowed}{good_path}\r\nHost: 127.0.0.1:{elsewhere}",
        f" http://127.0.0.1:{allowed}{good_path}",
        f"http://127.0.0.1:{allowed}/{ACCOUNT}/input/cust omers.csv{SAS}",
        f"http://127.0.0.1\t:{allowed}{good_path}",
        f"http://\uff11\uff12\uff17.0.0.1:{allowed}{good_path}",  # full-width digits
    ]


def test_refused_urls_get_400_naming_the_rule_and_nothing_is_fetched(
    churn_model_dir: Path, servers: tuple[Recorder, Recorder]
) -> None:
    allowed, elsewhere = servers
    service, published = make_service(churn_model_dir, allowed)
    urls = refused_urls(allowed.port, elsewhere.port)
    for i, url in enumerate(urls):
        reply = service.handle(body(url, f"refused-{i}"))
        answer = json.loads(reply.body)
        assert reply.status == 400, (url, reply.body)
        assert answer["code"] == ErrorCode.BLOB_URL_NOT_ALLOWED, (url, answer)
        assert answer["message"].startswith("blob_url "), answer
        assert service.dispatcher is not None and service.dispatcher.state(f"refused-{i}", 1) is None
        # The function app records the endpoint's own code and message as the file's error record.
        code, message = classify_rejection(EndpointReply(reply.status, str(reply.body)))
        assert (code, message) == (ErrorCode.BLOB_URL_NOT_ALLOWED, answer["message"])
    assert allowed.hits == [] and elsewhere.hits == [], (allowed.hits, elsewhere.hits)
    assert published.results == []


def test_messages_name_the_rule(servers: tuple[Recorder, Recorder]) -> None:
    allowed, elsewhere = servers
    accounts = (InputAccount.from_url(f"http://127.0.0.1:{allowed.port}/{ACCOUNT}"),)
    cases: dict[str, str] = {
        f"http://127.0.0.1:{elsewhere.port}/{ACCOUNT}/c/b": "allow-list INPUT_STORAGE_ACCOUNT_URLS",
        f"http://u@127.0.0.1:{allowed.port}/{ACCOUNT}/c/b": "user information",
        f"ftp://127.0.0.1:{allowed.port}/{ACCOUNT}/c/b": "http or https",
        f"http://127.0.0.1:{allowed.port}/{ACCOUNT}/../x/c/b": "dot segments",
        f"http://127.0.0.1:{allowed.port}\\@x/{ACCOUNT}/c/b": "only URL characters",
        f"http://127.0.0.1:{allowed.port}:1/{ACCOUNT}/c/b": "invalid host or port",
    }
    for url, rule in cases.items():
        with pytest.raises(BlobUrlRefused, match=rule):
            check_input_url(url, accounts)
    with pytest.raises(BlobUrlRefused) as refused:
        check_input_url(f"http://127.0.0.1:{elsewhere.port}/{ACCOUNT}/c/b?sig=secret", accounts)
    assert "secret" not in str(refused.value), "the SAS must not appear in the answer"
    assert f"http://127.0.0.1:{allowed.port}/{ACCOUNT}/" in str(refused.value)


def test_allowed_urls_pass(servers: tuple[Recorder, Recorder]) -> None:
    allowed, _ = servers
    accounts = (
        InputAccount.from_url(f"http://127.0.0.1:{allowed.port}/{ACCOUNT}/"),
        InputAccount.from_url("https://stdata.blob.core.windows.net/"),
    )
    for url in (
        f"http://127.0.0.1:{allowed.port}/{ACCOUNT}/input/customers.csv{SAS}",
        f"HTTP://127.0.0.1:{allowed.port}/{ACCOUNT}/input/a%20b.csv",
        "https://stdata.blob.core.windows.net/input/dir/customers.csv.gz" + SAS,
        "https://STDATA.blob.core.windows.net:443/input/customers.csv",
    ):
        check_input_url(url, accounts)


def test_a_redirect_from_an_allowed_account_is_not_followed(
    churn_model_dir: Path, servers: tuple[Recorder, Recorder]
) -> None:
    allowed, elsewhere = servers
    allowed.redirect_to = f"http://127.0.0.1:{elsewhere.port}/{ACCOUNT}/input/secret.csv"
    service, published = make_service(churn_model_dir, allowed)
    url = f"http://127.0.0.1:{allowed.port}/{ACCOUNT}/input/customers.csv{SAS}"
    reply = service.handle(body(url, "redirected"))
    assert reply.status == 202, reply.body
    wait_until(lambda: len(published.results) == 1, 30, "the result to be published", interval=0.02)
    result = published.results[0]
    assert result.status == ResultStatus.FAILED and result.error is not None
    assert result.error.code == ErrorCode.BLOB_URL_NOT_ALLOWED and "HTTP 302" in result.error.message, result.error
    assert [hit.split("?")[0] for hit in allowed.hits] == [f"GET /{ACCOUNT}/input/customers.csv"]
    assert elsewhere.hits == []


def test_an_input_that_came_with_its_request_is_scored_without_reading_storage(
    churn_model_dir: Path, servers: tuple[Recorder, Recorder]
) -> None:
    allowed, _ = servers
    service, published = make_service(churn_model_dir, allowed)
    url = f"http://127.0.0.1:{allowed.port}/{ACCOUNT}/input/customers.csv{SAS}"
    data = to_csv(frame(5, seed=7))
    good = replace(AsyncScoringRequest.from_json(body(url, "inline")), input_b64=base64.b64encode(data).decode())
    bad = replace(good, request_id="not-base64", input_b64="not base64!")
    for request in (good, bad):
        assert service.handle(request.to_json()).status == 202
    wait_until(lambda: len(published.results) == 2, 30, "both results to be published", interval=0.02)
    results = {r.request_id: r for r in published.results}
    scored = results["inline"]
    assert scored.status == ResultStatus.SUCCEEDED and scored.rows_scored == 5 and scored.output is not None
    assert scored.output.inline_bytes().startswith(data.split(b"\n")[0])  # the header the input had
    refused = results["not-base64"]
    assert refused.status == ResultStatus.FAILED and refused.error is not None
    assert refused.error.code == ErrorCode.INVALID_REQUEST and "input_b64" in refused.error.message
    assert allowed.hits == []  # neither was read from its blob_url


def test_allow_list_setting_fails_fast_and_defaults_to_the_results_account() -> None:
    base = {"AZUREML_MODEL_DIR": "/m"}
    for bad in ("ftp://x", "http://u:p@host/", "http://host/?q=1", "http://host:99999/", "not a url"):
        with pytest.raises(SettingsError, match="INPUT_STORAGE_ACCOUNT_URLS"):
            ScoringSettings.from_env({**base, "INPUT_STORAGE_ACCOUNT_URLS": bad})
    both = ScoringSettings.from_env(
        {
            **base,
            "INPUT_STORAGE_ACCOUNT_URLS": "https://a.blob.core.windows.net, http://127.0.0.1:10000/devstoreaccount1",
        }
    )
    assert [str(a) for a in input_accounts(both)] == [
        "https://a.blob.core.windows.net:443/",
        "http://127.0.0.1:10000/devstoreaccount1/",
    ]
    results_only = ScoringSettings.from_env({**base, "RESULTS_STORAGE_ACCOUNT_URL": "https://r.blob.core.windows.net/"})
    assert [str(a) for a in input_accounts(results_only)] == ["https://r.blob.core.windows.net:443/"]
