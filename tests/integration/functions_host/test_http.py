"""HTTP triggers through the real host process: routes, methods, keys, request/response objects, settings."""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.fixtures.azurite import Azurite
from tests.support.wait import wait_until

from .conftest import FixtureApp

YEARLY = "0 0 0 1 1 *"


def base_settings(azurite: Azurite) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "DataStorage": azurite.connection_string,
        "WATCH_CONTAINER": f"watch-{uuid.uuid4().hex[:8]}",
        "TICK_SCHEDULE": YEARLY,
        "AzureFunctionsWebHost__hostid": f"http-{uuid.uuid4().hex[:8]}",
    }


def test_function_key_route_params_and_response(fixture_app: FixtureApp, azurite: Azurite) -> None:
    fixture_app.write_settings(base_settings(azurite))
    host = fixture_app.start(env={**os.environ, "FUNCTIONS_HOST_KEY": "k-123"})
    assert "http_echo" in host.ready_line and "on_blob" in host.ready_line

    url = f"{host.url}/api/echo/item-42?x=1&y=two"
    reply = requests.post(url, data=b"payload", headers={"x-functions-key": "k-123", "x-test": "yes"}, timeout=10)
    assert reply.status_code == 201
    assert reply.headers["Content-Type"].startswith("application/json")
    body = reply.json()
    assert body["method"] == "POST"
    assert body["route_params"] == {"item_id": "item-42"}
    assert body["params"] == {"x": "1", "y": "two"}
    assert body["body"] == "payload"
    assert body["header"] == "yes"
    assert body["function_name"] == "http_echo"
    assert uuid.UUID(body["invocation_id"])

    chunked = requests.post(f"{host.url}/api/echo/a?code=k-123", data=iter([b"in ", b"chunks"]), timeout=10)
    assert chunked.json()["body"] == "in chunks"
    assert requests.get(f"{host.url}/api/echo/a?code=k-123", timeout=10).status_code == 201
    assert requests.get(f"{host.url}/api/echo/a", timeout=10).status_code == 401
    assert requests.get(f"{host.url}/api/echo/a", headers={"x-functions-key": "wrong"}, timeout=10).status_code == 401
    # Method not in the function's list, and an unknown route.
    assert requests.put(f"{host.url}/api/echo/a?code=k-123", timeout=10).status_code == 404
    assert requests.get(f"{host.url}/api/nothing-here", timeout=10).status_code == 404
    bad_length = {"x-functions-key": "k-123", "Content-Length": "ten"}
    assert requests.post(f"{host.url}/api/echo/a", headers=bad_length, timeout=10).status_code == 400
    assert requests.get(f"{host.url}/api/echo/a?code=k-123", timeout=10).status_code == 201  # still serving


def test_anonymous_admin_failure_and_setting_precedence(fixture_app: FixtureApp, azurite: Azurite) -> None:
    fixture_app.write_settings({**base_settings(azurite), "GREETING": "from-file", "FILE_ONLY": "file-value"})
    env = {**os.environ, "GREETING": "from-env"}
    env.pop("FUNCTIONS_HOST_KEY", None)
    env.pop("FILE_ONLY", None)
    host = fixture_app.start(env=env)

    greeting = requests.get(f"{host.url}/api/greeting", timeout=10)
    assert greeting.status_code == 200
    assert greeting.text == "from-env|file-value"
    assert greeting.headers["Content-Type"].startswith("text/plain")

    assert requests.get(f"{host.url}/api/broken", timeout=10).status_code == 500
    key_file = fixture_app.data_dir / "host.key"
    key = key_file.read_text().strip()
    assert len(key) >= 32
    assert (key_file.stat().st_mode & 0o777) == 0o600
    assert requests.get(f"{host.url}/api/admin-only", timeout=10).status_code == 401
    admin = requests.get(f"{host.url}/api/admin-only", headers={"x-functions-key": key}, timeout=10)
    assert (admin.status_code, admin.text) == (200, "admin ok")
    assert (
        requests.get(f"{host.url}/admin/host/status", headers={"x-functions-key": key}, timeout=10).json()["state"]
        == "Running"
    )
    assert "Executed 'Functions.http_broken' (Failed" in host.log_text()

    assert host.stop() == 0
    assert "functions host stopped" in host.log_text()


def test_route_prefix_and_function_timeout_from_host_json(fixture_app: FixtureApp, azurite: Azurite) -> None:
    fixture_app.write_settings(base_settings(azurite))
    fixture_app.write_host_json({"http": {"routePrefix": "v1"}})
    host_json = fixture_app.script_root / "host.json"
    host_json.write_text(host_json.read_text().replace('"version"', '"functionTimeout": "00:00:01", "version"'))
    host = fixture_app.start()
    assert requests.get(f"{host.url}/v1/greeting", timeout=10).status_code == 200
    assert requests.get(f"{host.url}/api/greeting", timeout=10).status_code == 404
    # Over the timeout: the runtime would cancel it; the local host lets it finish and says so.
    assert requests.get(f"{host.url}/v1/slow?seconds=1.5", timeout=10).text == "finished"
    assert "Timeout value of 1s exceeded by function 'Functions.http_slow'" in host.log_text()


def test_sigterm_lets_a_running_request_finish(fixture_app: FixtureApp, azurite: Azurite) -> None:
    fixture_app.write_settings(base_settings(azurite))
    host = fixture_app.start()
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(requests.get, f"{host.url}/api/slow?seconds=2", timeout=30)
        wait_until(lambda: "Executing 'Functions.http_slow'" in host.log_text(), 10, "the slow call to start")
        assert host.stop() == 0
        reply = pending.result()
    assert (reply.status_code, reply.text) == (200, "finished")
