"""A scoring endpoint that may not read the function app's storage account: every file gets an error record.

The real scoring server (azmlinfsrv) is started with an input allow-list that names another account; the real
``score_request`` function sends it the read SAS URL of a file in Azurite; the server answers 400
``blob_url_not_allowed`` at once, and the function app records that as the file's error record (and completes
the message: nothing is left to retry).
"""

from __future__ import annotations

import json

import pytest

from shared.contracts import derive_request_id
from tests.fixtures.scoring import UNANSWERED_ACCOUNT, ScoringServer

from .conftest import AppEnv
from .fa_support import indexed_function, run_like_host, set_env
from .test_fa_submit_write import trigger

pytestmark = pytest.mark.slow


def test_a_refused_blob_url_becomes_the_files_error_record(
    fa_env: AppEnv, unanswered_account_server: ScoringServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_account = UNANSWERED_ACCOUNT  # the only account the server may read: not the function app's
    set_env(monkeypatch, SCORING_URI=unanswered_account_server.score_url)
    etag = fa_env.upload("allow/customers.csv", b"a,b\n1,2\n", {"session_id": "allow-s"})
    trigger(fa_env, "allow/customers.csv")
    rid = derive_request_id(fa_env.input, "allow/customers.csv", etag)
    message, error = run_like_host(fa_env.bus_connection, "scoring", lambda m: m.message_id == rid,
                                   indexed_function("score_request"))  # fmt: skip
    assert message is not None and error is None, error
    document = json.loads(fa_env.read(fa_env.output, "errors/allow/customers.csv.error.json"))
    assert document["error"]["code"] == "blob_url_not_allowed"
    assert "INPUT_STORAGE_ACCOUNT_URLS" in document["error"]["message"]
    assert other_account in document["error"]["message"]
    assert "sig=" not in document["error"]["message"]
    record = fa_env.ledger_record(rid)
    assert (record["state"], record["error_code"]) == ("failed", "blob_url_not_allowed")
