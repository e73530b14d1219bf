"""`python -m client` as a subprocess against real Azurite and the Service Bus emulator.

The test plays the pipeline's part: it watches the input container for the client's upload and publishes
the InferenceResult on the client's session with the real azure-servicebus SDK, so the client is tested
apart from the function app and the scoring service.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import IO

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.servicebus import ServiceBusClient, ServiceBusMessage
from azure.storage.blob import BlobProperties, BlobServiceClient

from devstack.ports import free_port
from shared.contracts import DataFormat, ErrorInfo, InferenceResult, OutputRef, RowError, derive_request_id
from tests.fixtures.azurite import Azurite
from tests.fixtures.servicebus import ServiceBusEmulator, ServiceBusFactory, project_entities
from tests.support.results import failed, succeeded
from tests.support.wait import wait_for, wait_until

REPO = Path(__file__).resolve().parents[3]
CSV = "customerID,tenure,MonthlyCharges\nA-1,3,29.5\nB-2,40,99.0\n"
JSONL = '{"customerID": "A-1", "tenure": 3}\n{"customerID": "B-2", "tenure": 40}\n'


@pytest.fixture(scope="module")
def blobs(azurite: Azurite) -> BlobServiceClient:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    for name in ("input", "results"):
        with contextlib.suppress(ResourceExistsError):
            service.create_container(name)
    return service


@pytest.fixture
def client_env(azurite: Azurite, servicebus: ServiceBusEmulator, blobs: BlobServiceClient) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DataStorage", "ServiceBus", "FUNCTIONS_"))}
    env.update(
        {
            "DataStorage": azurite.connection_string,
            "ServiceBus": servicebus.connection_string,
            "FUNCTIONS_URL": f"http://127.0.0.1:{free_port()}",  # nothing listens there
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def cli(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "client", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def start_cli(args: list[str], env: dict[str, str], cwd: Path = REPO) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "client", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(REPO)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_blob(blobs: BlobServiceClient, name: str, session: str, timeout: float = 30) -> BlobProperties:
    """The uploaded blob, once it is there with this run's session id (re-used names are overwritten)."""
    client = blobs.get_blob_client("input", name)

    def uploaded() -> BlobProperties | None:
        props = client.get_blob_properties() if client.exists() else None
        return props if props is not None and props.metadata.get("session_id") == session else None

    return wait_for(uploaded, timeout, f"the client to upload {name}", interval=0.2)


def publish(servicebus: ServiceBusEmulator, session: str, *results: InferenceResult) -> None:
    sb = ServiceBusClient.from_connection_string(servicebus.connection_string)
    with sb, sb.get_topic_sender("inference-results") as sender:
        batch = sender.create_message_batch()
        for result in results:
            batch.add_message(
                ServiceBusMessage(
                    result.to_json(),
                    session_id=session,
                    message_id=result.message_id,
                    application_properties=result.application_properties(),  # type: ignore[arg-type]
                    content_type="application/json",
                )
            )
        sender.send_messages(batch)


def scored(data: str, fmt: DataFormat) -> bytes:
    """A stand-in scored output (the client stores whatever bytes the result carries)."""
    if fmt == DataFormat.CSV:
        header, *rows = data.strip().splitlines()
        return ("\n".join([header + ",prediction,probability", *(r + ",1,0.75" for r in rows)]) + "\n").encode()
    lines = [json.dumps({**json.loads(line), "prediction": 1, "probability": 0.75}) for line in data.splitlines()]
    return ("\n".join(lines) + "\n").encode()


def request_id(props: BlobProperties) -> str:
    return derive_request_id("input", str(props.name), str(props.etag))


def publish_scored(servicebus: ServiceBusEmulator, session: str, props: BlobProperties, name: str) -> bytes:
    """Publishes the scored result of the uploaded CSV (as the scoring service would); returns its output."""
    output = scored(CSV, DataFormat.CSV)
    publish(servicebus, session, succeeded(request_id(props), name, output))
    return output


def finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def test_submit_wait_saves_inline_and_blob_outputs_and_reports_failures(
    tmp_path: Path, client_env: dict[str, str], blobs: BlobServiceClient, servicebus: ServiceBusEmulator
) -> None:
    session = f"it-{uuid.uuid4().hex[:12]}"
    prefix = f"it/{session}"
    (tmp_path / "a.csv").write_text(CSV)
    (tmp_path / "b.jsonl.gz").write_bytes(gzip.compress(JSONL.encode()))
    (tmp_path / "c.csv").write_text(CSV)
    out_dir = tmp_path / "out"
    args = ["submit", "a.csv", "b.jsonl.gz", "c.csv", "--wait", "--session", session, "--prefix", prefix]
    args += ["--model", "churn", "--timeout", "60", "--out", str(out_dir)]
    proc = start_cli(args, client_env, cwd=tmp_path)  # relative file arguments, as a user types them
    try:
        a = wait_for_blob(blobs, f"{prefix}/a.csv", session)
        b = wait_for_blob(blobs, f"{prefix}/b.jsonl.gz", session)
        c = wait_for_blob(blobs, f"{prefix}/c.csv", session)
        assert a.metadata == {"session_id": session, "model": "churn"}
        assert a.content_settings.content_type == "text/csv"
        uploaded = blobs.get_blob_client("input", f"{prefix}/b.jsonl.gz").download_blob().readall()
        assert uploaded == (tmp_path / "b.jsonl.gz").read_bytes()

        a_out = scored(CSV, DataFormat.CSV)
        b_out = gzip.compress(scored(JSONL, DataFormat.JSONL))
        staged = blobs.get_blob_client("results", f"{request_id(b)}/1/b.jsonl.gz")
        staged.upload_blob(b_out, overwrite=True)
        b_ref = OutputRef.inline(b_out, DataFormat.JSONL, "gzip")
        b_staged = OutputRef(DataFormat.JSONL, "gzip", b_ref.size, b_ref.sha256, blob_url=staged.url)
        no_rows = ErrorInfo("no_valid_rows", "none of the 2 rows could be scored")
        publish(
            servicebus,
            session,
            succeeded(request_id(a), a.name, a_out),
            succeeded(request_id(b), b.name, b_staged),
            failed(request_id(c), c.name, no_rows, (RowError(1, "tenure: expected a number, got 'x'"),), 2),
        )
        code, out, err = finish(proc)
    finally:
        proc.kill()
    assert code == 1, (out, err)
    assert (out_dir / "a.csv").read_bytes() == a_out, out
    assert (out_dir / "b.jsonl.gz").exists(), out
    assert (out_dir / "b.jsonl.gz").read_bytes() == b_out
    assert not (out_dir / "c.csv").exists()
    assert "none of the 2 rows could be scored [no_valid_rows]" in out
    assert "row 1: tenure: expected a number, got 'x'" in out
    assert f"session {session}: 2 succeeded, 1 failed" in out
    assert "Traceback" not in err


def test_submit_wait_json_succeeds_with_exit_0(
    tmp_path: Path, client_env: dict[str, str], blobs: BlobServiceClient, servicebus: ServiceBusEmulator
) -> None:
    session = f"it-{uuid.uuid4().hex[:12]}"
    source = tmp_path / f"{session}.csv"
    source.write_text(CSV)
    proc = start_cli(["submit", str(source), "--wait", "--json", "--session", session, "--timeout", "60"], client_env)
    try:
        props = wait_for_blob(blobs, source.name, session)
        output = publish_scored(servicebus, session, props, source.name)
        code, out, err = finish(proc)
    finally:
        proc.kill()
    assert code == 0, err
    document = json.loads(out)
    (entry,) = document["files"]
    assert entry["status"] == "succeeded" and entry["request_id"] == request_id(props)
    assert Path(entry["output"]).read_bytes() == output
    assert Path(entry["output"]).name == f"{session}.scored.csv"
    assert document["exit_code"] == 0 and document["session_id"] == session


def test_submit_wait_times_out_with_exit_3(
    tmp_path: Path, client_env: dict[str, str], blobs: BlobServiceClient
) -> None:
    session = f"it-{uuid.uuid4().hex[:12]}"
    source = tmp_path / f"{session}.csv"
    source.write_text(CSV)
    started = time.monotonic()
    done = cli(["submit", str(source), "--wait", "--session", session, "--timeout", "3"], client_env)
    assert done.returncode == 3, done.stderr
    assert time.monotonic() - started < 45
    props = blobs.get_blob_client("input", source.name).get_blob_properties()
    assert props.metadata["session_id"] == session  # uploaded; only the wait gave up
    assert "timed out after 3 s" in done.stdout and request_id(props) in done.stdout


def test_bad_files_are_rejected_locally_and_never_uploaded(
    tmp_path: Path, client_env: dict[str, str], blobs: BlobServiceClient
) -> None:
    tag = uuid.uuid4().hex[:12]
    bad = {f"{tag}.txt": b"a,b\n1,2\n", f"{tag}-empty.csv": b"", f"{tag}-fake.csv.gz": b"a,b\n1,2\n"}
    for name, data in bad.items():
        (tmp_path / name).write_bytes(data)
    done = cli(["submit", *(str(tmp_path / n) for n in bad), "--wait", "--json"], client_env)
    assert done.returncode == 1, done.stderr
    codes = {Path(f["file"]).name: f["error"]["code"] for f in json.loads(done.stdout)["files"]}
    assert codes == {
        f"{tag}.txt": "unsupported_format",
        f"{tag}-empty.csv": "empty_file",
        f"{tag}-fake.csv.gz": "undecodable",
    }
    assert not any(tag in b.name for b in blobs.get_container_client("input").list_blobs())

    missing = cli(["submit", str(tmp_path / "missing.csv")], client_env)
    assert missing.returncode == 2 and "missing.csv: no such file" in missing.stderr


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"DataStorage": "AccountKey=only"}, "setting DataStorage"),
        ({"ServiceBus": "Endpoint=http://nope"}, "setting ServiceBus"),
        ({"SCORING_URI": "not-a-url"}, "setting SCORING_URI"),
        ({"MAX_INPUT_BYTES": "-5"}, "setting MAX_INPUT_BYTES"),
    ],
)
def test_config_errors_exit_2_with_one_line(
    tmp_path: Path, client_env: dict[str, str], override: dict[str, str], named: str
) -> None:
    (tmp_path / "a.csv").write_text(CSV)
    done = cli(["submit", str(tmp_path / "a.csv")], {**client_env, **override})
    assert done.returncode == 2
    assert named in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_unreachable_services_fail_with_one_readable_line(tmp_path: Path, client_env: dict[str, str]) -> None:
    (tmp_path / "a.csv").write_text(CSV)
    port = free_port()
    storage = (
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;"
        f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
    )
    down = cli(["submit", str(tmp_path / "a.csv")], {**client_env, "DataStorage": storage}, timeout=120)
    assert down.returncode == 1
    assert "cannot upload" in down.stdout and "DataStorage" in down.stdout and "[upload_failed]" in down.stdout
    assert "Traceback" not in down.stderr

    servicebus = f"Endpoint=sb://127.0.0.1:{port};SharedAccessKeyName=k;SharedAccessKey=v;UseDevelopmentEmulator=true"
    no_bus = cli(["submit", str(tmp_path / "a.csv"), "--wait"], {**client_env, "ServiceBus": servicebus}, timeout=120)
    assert no_bus.returncode == 1, no_bus.stderr
    assert "uploaded  " in no_bus.stdout  # the upload happened and its request id was printed
    assert "inference-results" in no_bus.stderr and "ServiceBus" in no_bus.stderr and "Traceback" not in no_bus.stderr

    status = cli(["status", "0123abcd"], client_env)
    assert status.returncode == 1
    assert "cannot reach function app" in status.stderr and "FUNCTIONS_URL" in status.stderr


# Above the client's receive wait (client.submit.POLL_SECONDS), as Azure's own minimum of 5 s would be.
LOCK_SECONDS = 8


def short_lock_entities(tmp_path: Path) -> Path:
    """The project's entities with every lock shortened to LOCK_SECONDS (the real one is a minute)."""
    config = json.loads(project_entities(tmp_path / "entities.json").read_text())
    for namespace in config["UserConfig"]["Namespaces"]:
        for topic in namespace["Topics"]:
            for subscription in topic["Subscriptions"]:
                subscription["Properties"]["LockDuration"] = f"PT{LOCK_SECONDS}S"
    path = tmp_path / "short-lock-entities.json"
    path.write_text(json.dumps(config))
    return path


class Lines:
    """Collects a process's output lines in a thread, so a test can wait for one without blocking."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 60) -> None:
        wait_until(lambda: any(text in line for line in self.lines), timeout, f"a line with {text!r}",
                   detail=lambda: "".join(self.lines))  # fmt: skip

    def text(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.lines)


def test_submit_wait_outlasts_the_session_lock(
    tmp_path: Path, client_env: dict[str, str], blobs: BlobServiceClient, servicebus_factory: ServiceBusFactory
) -> None:
    """A result arriving after the session lock would have expired still reaches the waiting client."""
    servicebus = servicebus_factory(short_lock_entities(tmp_path))
    env = {**client_env, "ServiceBus": servicebus.connection_string}
    session = f"it-{uuid.uuid4().hex[:12]}"
    source = tmp_path / f"{session}.csv"
    source.write_text(CSV)
    proc = start_cli(["submit", str(source), "--wait", "--session", session, "--timeout", "60"], env)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        props = wait_for_blob(blobs, source.name, session)
        out.wait_for("waiting   up to")  # the client holds the session lock from here on
        # Outlast the lock several times over; a client that did not renew it would have lost the session.
        outlasted = time.monotonic() + 2.5 * LOCK_SECONDS
        while time.monotonic() < outlasted:
            assert proc.poll() is None, out.text() + err.text()
            time.sleep(0.2)
        output = publish_scored(servicebus, session, props, source.name)
        code = proc.wait(timeout=60)
    finally:
        proc.kill()
    assert code == 0, out.text() + err.text()
    assert (tmp_path / f"{session}.scored.csv").read_bytes() == output


@pytest.mark.parametrize(
    ("extra", "wrong_key", "expected"),
    [
        (["--subscription", "nobody"], False, "subscription 'nobody'"),
        ([], True, "refused the credentials"),
    ],
)
def test_service_bus_problems_name_the_setting(
    tmp_path: Path,
    client_env: dict[str, str],
    servicebus: ServiceBusEmulator,
    extra: list[str],
    wrong_key: bool,
    expected: str,
) -> None:
    env = dict(client_env)
    if wrong_key:
        env["ServiceBus"] = servicebus.connection_string.replace("SharedAccessKey=SAS_KEY_VALUE", "SharedAccessKey=no")
        assert env["ServiceBus"] != servicebus.connection_string
    (tmp_path / "a.csv").write_text(CSV)
    done = cli(["submit", str(tmp_path / "a.csv"), "--wait", "--timeout", "20", *extra], env, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert expected in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_a_session_held_by_another_client_is_reported(
    tmp_path: Path, client_env: dict[str, str], blobs: BlobServiceClient
) -> None:
    session = f"it-{uuid.uuid4().hex[:12]}"
    (tmp_path / "a.csv").write_text(CSV)
    (tmp_path / "b.csv").write_text(CSV)
    first = start_cli(
        ["submit", str(tmp_path / "a.csv"), "--wait", "--session", session, "--timeout", "40"], client_env
    )
    try:
        assert first.stdout is not None
        Lines(first.stdout).wait_for("waiting   up to")  # said once the first client holds the session
        second = cli(["submit", str(tmp_path / "b.csv"), "--wait", "--session", session, "--timeout", "20"], client_env)
    finally:
        first.kill()
        first.communicate()
    assert second.returncode == 1, second.stdout + second.stderr
    assert f"session '{session}'" in second.stderr and "held by another receiver" in second.stderr
