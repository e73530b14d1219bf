"""The status page in a real browser: headless Chromium (Debian's ``chromium``, driven through Playwright's
Python API with ``executable_path``; no browser is downloaded) against the local stack while files flow.

It checks the page's counts against the ledger, one file's timeline against its ledger record and input blob,
that a bad file is listed under its error code with a working link to its error record, the Service Bus and
endpoint sections, and that the page refreshes itself. It saves a screenshot (``STATUS_SCREENSHOT`` names
where; the README's picture is one of these).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import pytest
from azure.servicebus.management import ServiceBusAdministrationClient
from azure.storage.blob import BlobServiceClient

from scoring.examples.churn.data import generate
from shared.contracts import DEFAULT_MODEL, derive_request_id, parse_iso
from tests.fixtures.stack import StackEndpoints

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]  # fmt: skip
GOOD_FILES = 24
DEADLINE_SECONDS = 180.0


def ledger_states(blobs: BlobServiceClient) -> Counter[str]:
    ledger = blobs.get_container_client("ledger")
    return Counter(
        (b.metadata or {}).get("state", "?")
        for b in ledger.list_blobs(name_starts_with="requests/", include=["metadata"])
        if b.name.endswith(".json")
    )


def ledger_record(blobs: BlobServiceClient, request_id: str) -> dict[str, Any] | None:
    blob = blobs.get_blob_client("ledger", f"requests/{request_id}.json")
    if not blob.exists():
        return None
    return json.loads(blob.download_blob().readall())


def upload_stream(blobs: BlobServiceClient, prefix: str) -> tuple[dict[str, str], str, threading.Thread]:
    """Uploads good files at a steady pace in a thread (so the page sees them flow) and one bad file at once;
    returns request ids by name (filled as uploads happen), the bad file's request id and the thread."""
    inbox = blobs.get_container_client("input")
    ids: dict[str, str] = {}
    bad_name = f"{prefix}/bad-missing-column.csv"
    bad = inbox.upload_blob(bad_name, b"gender,tenure\nFemale,3\n", metadata={"session_id": prefix})
    bad_id = derive_request_id("input", bad_name, bad.get_blob_properties().etag)
    data = generate(40, seed=3, label=False).to_csv(index=False).encode()

    def run() -> None:
        for i in range(GOOD_FILES):
            name = f"{prefix}/customers-{i:02d}.csv"
            blob = inbox.upload_blob(name, data, metadata={"session_id": f"{prefix}-{i % 4}"})
            ids[name] = derive_request_id("input", name, blob.get_blob_properties().etag)
            time.sleep(0.5)

    thread = threading.Thread(target=run, name="status-uploads", daemon=True)
    thread.start()
    return ids, bad_id, thread


# What the page shows while it refreshes itself, read in one evaluation; a refresh that lands during it is
# waited out and the page read again.
_SHOWN = """() => {
    const succeeded = document.querySelector('[data-card="succeeded"] b');
    if (!document.body || !succeeded) return null;  // a refresh's new document, not parsed yet
    return {
        generated: document.body.dataset.generatedAt || "",
        flowing: document.body.dataset.flowing || "",
        succeeded: succeeded.innerText,
    };
}"""
_REFRESH = re.compile(r'<meta http-equiv="refresh"[^>]*>')


def shown_now(page: Any) -> dict[str, str]:
    from playwright.sync_api import Error

    for _ in range(50):
        try:
            page.wait_for_load_state()
            shown: dict[str, str] | None = page.evaluate(_SHOWN)
        except Error as exc:
            if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                raise
            continue
        if shown is not None:
            return shown
        page.wait_for_timeout(100)
    raise AssertionError("the page kept reloading while it was read")


def without_refresh(route: Any) -> None:
    response = route.fetch()
    route.fulfill(response=response, body=_REFRESH.sub("", response.text()))


def leave_refreshing_page(page: Any) -> None:
    """Goes to a blank page: a load of the self-refreshing page can be cut short by its own refresh (Chromium
    then reports ``net::ERR_ABORTED``), and a blank page has no refresh to land during the next load."""
    from playwright.sync_api import Error

    for _ in range(20):
        try:
            page.goto("about:blank")
            return
        except Error as exc:
            if "ERR_ABORTED" not in str(exc) and "navigat" not in str(exc):
                raise
    raise AssertionError("the page kept reloading itself")


def settled(blobs: BlobServiceClient, request_ids: list[str]) -> bool:
    return all((ledger_record(blobs, rid) or {}).get("state") in ("succeeded", "failed") for rid in request_ids)


@pytest.fixture(scope="module")
def browser() -> Any:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium package (make setup does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def test_status_page_in_chromium_while_files_flow(
    stack: StackEndpoints, blobs: BlobServiceClient, browser: Any, tmp_path: Path
) -> None:
    assert stack.functions_key
    url = f"{stack.functions_url}/api/status?code={stack.functions_key}"
    prefix = f"status-{uuid.uuid4().hex[:8]}"
    ids, bad_id, uploads = upload_stream(blobs, prefix)
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    deadline = time.monotonic() + DEADLINE_SECONDS

    # While files flow: the page shows work in flight and refreshes itself (no reload from here).
    page.goto(url)
    first = shown_now(page)
    seen_flowing = first["flowing"] == "true"
    while shown_now(page)["generated"] == first["generated"]:
        assert time.monotonic() < deadline, "the page never refreshed itself"
        page.wait_for_timeout(250)
    succeeded_by_refresh: dict[str, int] = {}
    while uploads.is_alive() or not settled(blobs, [*ids.values(), bad_id]):
        assert time.monotonic() < deadline, "the files did not finish in time"
        now = shown_now(page)
        seen_flowing = seen_flowing or now["flowing"] == "true"
        succeeded_by_refresh[now["generated"]] = int(now["succeeded"])
        page.wait_for_timeout(500)
    assert seen_flowing, "no load of the page showed files in flight"
    counts = list(succeeded_by_refresh.values())
    assert counts[-1] > counts[0], f"the page's counts did not move between its own refreshes: {counts}"

    # Settled: the counts equal the ledger's (read before and after the page, unchanged in between). The page's
    # own refresh was seen above; from here it is loaded without it, so no refresh lands between two reads.
    page.route(lambda address: "/api/status?" in address, without_refresh)
    page.wait_for_timeout(3000)  # the writer has finished: nothing in flight any more
    leave_refreshing_page(page)
    before = ledger_states(blobs)
    page.goto(url)
    after = ledger_states(blobs)
    assert page.query_selector('meta[http-equiv="refresh"]') is None
    assert before == after
    assert int(page.inner_text('[data-card="succeeded"] b')) == after["succeeded"]
    assert int(page.inner_text('[data-card="failed"] b')) == after["failed"]
    for stage, state in (
        ("submitted, not scored yet (small files: until written)", "submitted"),
        ("accepted, being scored (larger files)", "accepted"),
    ):
        assert page.get_attribute(f'#in-flight tr[data-stage="{stage}"] td[data-count]', "data-count") == str(
            after[state]
        )

    # One file's timeline equals its ledger record and its input blob's creation time.
    shown = [rid for rid in ids.values() if page.query_selector(f'#recent tr[data-request-id="{rid}"]')]
    assert shown, "none of this test's files is among the latest files"
    rid = shown[0]
    record = ledger_record(blobs, rid)
    assert record is not None and record["state"] == "succeeded"
    name = next(n for n, r in ids.items() if r == rid)
    uploaded = blobs.get_blob_client("input", name).get_blob_properties().creation_time
    expected = {
        "uploaded": uploaded,
        "submitted": parse_iso(record["submitted_at"]),
        "accepted": parse_iso(record["accepted_at"]),
        "scored": parse_iso(record["completed_at"]),
        "written": parse_iso(record["updated_at"]),
    }
    row = f'#recent tr[data-request-id="{rid}"]'
    assert name in page.inner_text(f"{row} td.name")
    shown_times = {}
    for stage, when in expected.items():
        text = page.get_attribute(f'{row} td[data-stage="{stage}"]', "data-time")
        assert text, stage
        shown_times[stage] = parse_iso(text)
        assert abs((shown_times[stage] - when).total_seconds()) < 0.001, (stage, text, when)
    ordered = [shown_times[s] for s in ("submitted", "accepted", "scored", "written")]
    assert ordered == sorted(ordered)

    # The bad file is under its error code, and its link opens its error record.
    link = page.query_selector(f'#errors tr[data-error-code="missing_columns"] a[data-request-id="{bad_id}"]')
    assert link is not None, page.inner_text("#errors")
    assert "bad-missing-column.csv" in link.inner_text()
    shot = tmp_path / "status-page.png"
    page.screenshot(path=str(shot), full_page=True)
    if os.environ.get("STATUS_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["STATUS_SCREENSHOT"])
    response = page.request.get(urljoin(page.url, link.get_attribute("href") or ""))
    assert response.status == 200
    assert json.loads(response.body())["error"]["code"] == "missing_columns"

    # Service Bus depths are Service Bus's own; every route's endpoint answers.
    with ServiceBusAdministrationClient.from_connection_string(
        stack.servicebus_connection_string, connection_verify=str(stack.settings.servicebus_ca_file)
    ) as admin:
        for topic, subscription in (("inference-requests", "scoring"), ("inference-results", "writer")):
            props = admin.get_subscription_runtime_properties(topic, subscription)
            cell = f'#servicebus tr[data-subscription="{topic}/{subscription}"] td[data-dead-lettered]'
            assert page.get_attribute(cell, "data-dead-lettered") == str(props.dead_letter_message_count)
    assert page.get_attribute(f'#endpoints tr[data-model="{DEFAULT_MODEL}"]', "data-healthy") == "true"

    # The JSON form carries the same data.
    data = json.loads(page.request.get(url + "&format=json").body())
    assert data["totals"].get("succeeded") == after["succeeded"]
    assert data["totals"].get("failed") == after["failed"]
    assert shot.stat().st_size > 10_000
