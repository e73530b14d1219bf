"""Every sample in the installed azure-servicebus version's source distribution, run against the emulator.

The sdist is fetched at test time (`pip download --no-binary :all: --no-deps azure-servicebus==<installed>`,
cached under pytest's cache dir, never committed). Each sample runs in its own process through `samplerun.py`:
its source as published, connected with the emulator's connection string instead of namespace + Entra ID
credential (the only change; see `samplerun.py`), with its own entities through the samples' environment
variables (`SERVICEBUS_QUEUE_NAME`, `SERVICEBUS_SESSION_QUEUE_NAME`, `SERVICEBUS_TOPIC_NAME`,
`SERVICEBUS_SUBSCRIPTION_NAME`), so all of them run side by side on one emulator. A sample passes when it
exits 0 with no traceback; a sample that receives forever passes once its queue is drained (read through the
administration client) and it has printed what it received. The auto-lock-renew samples sleep 100 s several
times (480 s in all for the async one) and set the renewer's interval to 40 s to show a failure: every sleep in
their process is shortened 5x (the samples' 100 s of work become 20 s, the renewer's 40 s become 8 s, the 80 s
wait of the failure demo 16 s) and their queues get a 7 s lock instead of Azure's 60 s default, so the work
outlasts the lock almost three times, the renewer's interval still outlasts it, and renewal is still the only
thing that keeps the messages. (A 5 s lock left a renewer thread too little slack on a machine busy with other
tests: one message's lock was once lost.) The renewer's reason for giving up a lock, which the SDK logs only at
debug level, is part of each sample's output (`samplerun.py`).

Their session example closes its receiver while the renewer still runs, and the SDK may then log one traceback
of its own (`SESSION_CLOSE_RACE`): a renewal that falls due while the receiver closes fails inside the client.
Closing ends the client's AMQP session, which puts its cached `$management` link in error, but the receiver
counts as running until its keep-alive task wakes (it sleeps in 1 s steps, 0.2 s here, and close waits for it);
a renewal in that moment fails at `ManagementOperation.ready()` before anything is sent, the SDK logs it with
`logger.exception` and the renewer stops quietly. Nothing reaches the emulator, so Azure sees the same (a known
race of the SDK's renewer, avoided by closing the renewer before the receiver); the sample's work is done by
then. That one record, right after the session example's last line, is allowed; any other traceback fails.

`CLOUD_ONLY` lists the samples that need something only Azure has, with the reason; they are not run.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

import pytest
from azure.servicebus import ServiceBusMessage

from tests.fixtures.servicebus import ServiceBusEmulator, ServiceBusFactory
from tests.integration.servicebus import samplerun
from tests.integration.servicebus.sbhelp import admin, ca_file, client

SDK_VERSION = version("azure-servicebus")
RUNNER = Path(samplerun.__file__)
WORKERS = 6
SAMPLE_TIMEOUT_S = 170.0
TIME_SCALE = 5

_CREDENTIAL_OBJECT = (
    "builds the client from the namespace name and a credential object: the SDK then connects over TLS to "
    "port 5671 and trusts only public CAs (certifi); an emulator is reached through its connection string"
)
CLOUD_ONLY = {
    "proxy": "sends AMQP over WebSockets through an HTTP proxy (http_proxy=); the emulator speaks AMQP over TCP",
    "connection_to_custom_endpoint_address": "connects through a custom endpoint address (an application gateway "
    "in front of the namespace)",
    "client_identity_authentication": "authenticates with an Entra ID service principal (EnvironmentCredential)",
    "authenticate_using_azure_named_key_credential": _CREDENTIAL_OBJECT,
    "authenticate_using_azure_sas_credential": _CREDENTIAL_OBJECT,
    "generate_sas_token_and_authenticate_client": _CREDENTIAL_OBJECT,
}
# The SDK's own record of a renewal that raced its receiver's close (see the module docstring): the error is
# raised by the client's cached $management link, in `ready()` before the request is sent or, when the close
# came while an answer was awaited, in `execute()`.
SESSION_CLOSE_RACE = re.compile(
    r"Unexpected error occurred \(ValueError\('Management Operation error occurred\.'\)\)\. Handler shutting down\.\n"
    r"Traceback \(most recent call last\):\n"
    r"(?:  .*\n)*?"
    r'  File ".*/_pyamqp/(?:aio/_)?management_operation(?:_async)?\.py", line \d+, in (?:ready|execute)\n'
    r"    raise self\._mgmt_error\n"
    r"ValueError: Management Operation error occurred\.\n"
)
SESSION_EXAMPLE_DONE = "Register session into AutoLockRenewer.\nComplete messages.\n"
LOCK_SECONDS = {"auto_lock_renew": 7}  # see the module docstring
SESSION_SUBSCRIPTION = {"list_sessions"}  # samples whose SERVICEBUS_SUBSCRIPTION_NAME must require sessions
SCALED = {"auto_lock_renew"}
# Samples that only receive: their entities get these messages first, and they must print them.
PRELOADED = {"receive_queue": "q", "receive_peek": "q", "receive_iterator_queue": "q", "receive_subscription": "t"}
# sample_code_servicebus receives more messages than it sends (it was written for a queue other samples fill):
# a few more are waiting for it, so its receive loops with no max_wait_time end as they do in Azure.
EXTRA_INPUT = {"sample_code_servicebus": "q"}
PRELOADED_SESSIONS = {"list_sessions"}  # its session queue and session subscription get two sessions
INPUTS = [f"input-{i}" for i in range(3)]
# Samples whose receiver iterates with no max_wait_time: done when their queue is empty and they printed it.
RECEIVE_FOREVER = {"receive_iterator_queue", "failure_and_recovery"}
EXPECTED_OUTPUT = {"failure_and_recovery": [f"Data {i}" for i in range(10)]}  # what it sends, printed when received


def _stem(path: Path) -> str:
    return path.stem.removesuffix("_async")


@dataclass(frozen=True)
class Outcome:
    code: int | None
    output: str
    seconds: float
    stopped_when_drained: bool = False


@pytest.fixture(scope="module")
def samples(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache_plugin = getattr(request.config, "cache", None)  # absent with -p no:cacheprovider
    cache = (
        Path(cache_plugin.mkdir("azure-servicebus-sdist"))
        if cache_plugin is not None
        else tmp_path_factory.mktemp("azure-servicebus-sdist")
    )
    archive = cache / f"azure_servicebus-{SDK_VERSION}.tar.gz"
    if not archive.exists():
        done = subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-binary", ":all:", "--no-deps", "--quiet",
             f"azure-servicebus=={SDK_VERSION}", "-d", str(cache)],
            capture_output=True, text=True, timeout=300, check=False,
        )  # fmt: skip
        if done.returncode != 0 or not archive.exists():
            pytest.fail(f"could not download the azure-servicebus {SDK_VERSION} sdist:\n{done.stderr[-2000:]}")
    target = tmp_path_factory.mktemp("sdk-samples")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if "/samples/" in m.name and m.name.endswith(".py")]
        tar.extractall(target, members=members, filter="data")
    (root,) = target.iterdir()
    return root / "samples"


def _sample_files(samples: Path) -> list[Path]:
    return sorted([*samples.glob("sync_samples/*.py"), *samples.glob("async_samples/*.py")])


def _entities(files: list[Path]) -> dict[str, object]:
    queues, topics = [], []
    for path in files:
        name = path.stem.lower()
        lock = f"PT{LOCK_SECONDS.get(_stem(path), 60)}S"
        queues.append({"Name": f"{name}-q", "Properties": {"LockDuration": lock}})
        queues.append({"Name": f"{name}-sq", "Properties": {"LockDuration": lock, "RequiresSession": True}})
        sub_props: dict[str, object] = {"LockDuration": lock}
        if _stem(path) in SESSION_SUBSCRIPTION:
            sub_props["RequiresSession"] = True
        topics.append(
            {"Name": f"{name}-t", "Properties": {}, "Subscriptions": [{"Name": "sub", "Properties": sub_props}]}
        )
    return {"UserConfig": {"Namespaces": [{"Name": "samples", "Queues": queues, "Topics": topics}]}}


@pytest.fixture(scope="module")
def emulator(samples: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServiceBusEmulator]:
    root = tmp_path_factory.mktemp("samples-emulator")
    config = root / "entities.json"
    config.write_text(json.dumps(_entities(_sample_files(samples))))
    factory = ServiceBusFactory(root)
    try:
        yield factory(config)
    finally:
        factory.close()


def _env(sb: ServiceBusEmulator, path: Path) -> dict[str, str]:
    name = path.stem.lower()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "SERVICEBUS_CONNECTION_STR": sb.connection_string,
        "SERVICEBUS_FULLY_QUALIFIED_NAMESPACE": f"127.0.0.1:{sb.port}",
        "SERVICEBUS_QUEUE_NAME": f"{name}-q",
        "SERVICEBUS_SESSION_QUEUE_NAME": f"{name}-sq",
        "SERVICEBUS_TOPIC_NAME": f"{name}-t",
        "SERVICEBUS_SUBSCRIPTION_NAME": "sub",
        "SERVICEBUS_SESSION_ID": "sample-session",
        # The administration client trusts the emulator's CA the standard ways: requests and OpenSSL (aiohttp).
        "REQUESTS_CA_BUNDLE": ca_file(sb),
        "SSL_CERT_FILE": ca_file(sb),
    }
    if _stem(path) in SCALED:
        env["SAMPLE_TIME_SCALE"] = str(TIME_SCALE)
    return env


def _drained(sb: ServiceBusEmulator, path: Path, output: str) -> bool:
    name = path.stem.lower()
    with admin(sb) as a:
        queues = [a.get_queue_runtime_properties(f"{name}-q"), a.get_queue_runtime_properties(f"{name}-sq")]
    expected = INPUTS if _stem(path) in PRELOADED else EXPECTED_OUTPUT[_stem(path)]
    return all(line in output for line in expected) and all(q.total_message_count == 0 for q in queues)


def _run(sb: ServiceBusEmulator, path: Path, log_dir: Path) -> Outcome:
    started = time.monotonic()
    log = log_dir / f"{path.parent.name}-{path.stem}.log"
    with log.open("w+") as out:
        proc = subprocess.Popen(
            [sys.executable, str(RUNNER), str(path)], cwd=path.parent, env=_env(sb, path),
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
        drained = False
        while proc.poll() is None and time.monotonic() - started < SAMPLE_TIMEOUT_S:
            time.sleep(0.5)
            if _stem(path) in RECEIVE_FOREVER and time.monotonic() - started > 3:
                out.flush()
                if _drained(sb, path, log.read_text(errors="replace")):
                    drained = True
                    break
        if proc.poll() is None:
            proc.kill()
        code = proc.wait()
        return Outcome(None if drained else code, log.read_text(errors="replace"), time.monotonic() - started, drained)


def _preload(sb: ServiceBusEmulator, paths: list[Path]) -> None:
    with client(sb) as c:
        for path in paths:
            name, stem = path.stem.lower(), _stem(path)
            kind = PRELOADED.get(stem) or EXTRA_INPUT.get(stem)
            if kind is not None:
                entity = f"{name}-{kind}"
                sender = c.get_queue_sender(entity) if kind == "q" else c.get_topic_sender(entity)
                with sender:
                    sender.send_messages([ServiceBusMessage(body) for body in INPUTS])
            if stem in PRELOADED_SESSIONS:
                for sender in (c.get_queue_sender(f"{name}-sq"), c.get_topic_sender(f"{name}-t")):
                    with sender:
                        sender.send_messages([ServiceBusMessage("x", session_id=sid) for sid in ("s1", "s2")])


@pytest.fixture(scope="module")
def outcomes(
    samples: Path, emulator: ServiceBusEmulator, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Outcome]:
    """Every runnable sample, run side by side (the slowest first)."""
    log_dir = tmp_path_factory.mktemp("sample-logs")
    runnable = [p for p in _sample_files(samples) if _stem(p) not in CLOUD_ONLY]
    runnable.sort(key=lambda p: _stem(p) not in SCALED)
    _preload(emulator, runnable)
    with ThreadPoolExecutor(WORKERS) as pool:
        results = pool.map(lambda p: _run(emulator, p, log_dir), runnable)
        return {f"{p.parent.name}/{p.name}": outcome for p, outcome in zip(runnable, results, strict=True)}


def _without_session_close_race(output: str) -> str:
    """The output less the SDK's record of a renewal racing the session receiver's close, where it can occur."""
    done = output.find(SESSION_EXAMPLE_DONE)
    if done < 0:
        return output
    rest = done + len(SESSION_EXAMPLE_DONE)
    race = SESSION_CLOSE_RACE.match(output, rest)
    return output if race is None else output[:rest] + output[race.end() :]


def _all_sample_names() -> list[str]:
    """Sample names for parametrisation, from the SDK version's known layout (checked against the sdist below)."""
    return [f"{kind}/{name}" for kind, names in KNOWN_SAMPLES.items() for name in names]


KNOWN_SAMPLES = {
    "sync_samples": [
        "authenticate_client_connstr.py", "authenticate_using_azure_named_key_credential.py",
        "authenticate_using_azure_sas_credential.py", "auto_lock_renew.py", "client_identity_authentication.py",
        "connection_to_custom_endpoint_address.py", "deadletter_messages_and_correct.py", "failure_and_recovery.py",
        "generate_sas_token_and_authenticate_client.py", "list_sessions.py", "mgmt_queue.py", "mgmt_rule.py",
        "mgmt_subscription.py", "mgmt_topic.py", "proxy.py", "receive_deadlettered_messages.py",
        "receive_deferred_message_queue.py", "receive_iterator_queue.py", "receive_peek.py", "receive_queue.py",
        "receive_subscription.py", "sample_code_servicebus.py", "schedule_messages_and_cancellation.py",
        "schedule_topic_messages_and_cancellation.py", "send_and_receive_amqp_annotated_message.py",
        "send_queue.py", "send_topic.py", "session_pool_receive.py", "session_send_receive.py",
        "topic_subscription_with_rule_operations.py",
    ],
    "async_samples": [
        "authenticate_client_connstr_async.py", "authenticate_using_azure_named_key_credential_async.py",
        "authenticate_using_azure_sas_credential_async.py", "auto_lock_renew_async.py",
        "client_identity_authentication_async.py", "connection_to_custom_endpoint_address_async.py",
        "deadletter_messages_and_correct_async.py", "list_sessions_async.py", "mgmt_queue_async.py",
        "mgmt_rule_async.py", "mgmt_subscription_async.py", "mgmt_topic_async.py", "proxy_async.py",
        "receive_deadlettered_messages_async.py", "receive_deferred_message_queue_async.py",
        "receive_iterator_queue_async.py", "receive_peek_async.py", "receive_queue_async.py",
        "receive_subscription_async.py", "sample_code_servicebus_async.py",
        "schedule_messages_and_cancellation_async.py", "schedule_topic_messages_and_cancellation_async.py",
        "send_and_receive_amqp_annotated_message_async.py", "send_queue_async.py", "send_topic_async.py",
        "session_pool_receive_async.py", "session_send_receive_async.py",
        "topic_subscription_with_rule_operations_async.py",
    ],
}  # fmt: skip


def test_every_sample_of_the_sdist_is_covered(samples: Path) -> None:
    found = {f"{p.parent.name}/{p.name}" for p in _sample_files(samples)}
    assert found == set(_all_sample_names()), "the installed SDK's samples changed: update KNOWN_SAMPLES"


def test_the_connection_is_the_only_change(samples: Path) -> None:
    for path in _sample_files(samples):
        if _stem(path) in CLOUD_ONLY:
            continue
        source = path.read_text(encoding="utf-8")
        changed, _count = samplerun.connect_to_emulator(source)
        diff = [line for line in difflib.ndiff(source.splitlines(), changed.splitlines()) if line.startswith("+ ")]
        assert all(samplerun.CONNECTION in line for line in diff), (path.name, diff)
        # No client is left that would try Entra ID against a namespace name.
        assert samplerun.CLIENT_RE.search(changed) is None, path.name


@pytest.mark.parametrize("name", _all_sample_names())
def test_sample(name: str, outcomes: dict[str, Outcome]) -> None:
    stem = name.split("/")[1].removesuffix(".py").removesuffix("_async")
    if stem in CLOUD_ONLY:
        pytest.skip(f"needs Azure: {CLOUD_ONLY[stem]}")
    outcome = outcomes[name]
    report = f"exit {outcome.code} after {outcome.seconds:.0f} s:\n{outcome.output[-4000:]}"
    output = _without_session_close_race(outcome.output) if stem == "auto_lock_renew" else outcome.output
    assert "Traceback" not in output, report
    if stem == "auto_lock_renew":  # the long jobs completed and the failure callback fired
        assert outcome.output.count("Complete") >= 2, report
        assert "Intentionally failed to renew lock" in outcome.output, report
        assert "Lock renew failure demonstration complete." in outcome.output, report
    if not outcome.stopped_when_drained:
        assert outcome.code == 0, report
    if stem in PRELOADED:
        printed = INPUTS[:2] if stem == "receive_peek" else INPUTS  # the sample peeks two messages
        assert all(body in outcome.output for body in printed), report
    if stem in EXPECTED_OUTPUT:
        assert all(line in outcome.output for line in EXPECTED_OUTPUT[stem]), report
    if stem in PRELOADED_SESSIONS:
        assert "Queue session: s1" in outcome.output and "Subscription session: s2" in outcome.output, report
