"""A small v2-model app the functions host tests run: every function records what it saw as a JSON line in
``$RECORD_DIR/<function>.jsonl`` so the tests can check what the host passed in."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import typing
from typing import Any

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
_lock = threading.Lock()


def record(function: str, entry: dict[str, Any]) -> None:
    path = os.path.join(os.environ["RECORD_DIR"], f"{function}.jsonl")
    with _lock, open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(entry, default=str) + "\n")


@app.route(route="echo/{item_id}", methods=["GET", "POST"])
def http_echo(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    payload = {
        "method": req.method,
        "route_params": dict(req.route_params),
        "params": dict(req.params),
        "body": req.get_body().decode(),
        "header": req.headers.get("x-test"),
        "invocation_id": context.invocation_id,
        "function_name": context.function_name,
    }
    return func.HttpResponse(json.dumps(payload), status_code=201, mimetype="application/json")


@app.route(route="greeting", auth_level=func.AuthLevel.ANONYMOUS)
def http_greeting(req: func.HttpRequest) -> str:
    return os.environ.get("GREETING", "unset") + "|" + os.environ.get("FILE_ONLY", "unset")


@app.route(route="broken", auth_level=func.AuthLevel.ANONYMOUS)
def http_broken(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("broken on purpose")


@app.route(route="admin-only", auth_level=func.AuthLevel.ADMIN)
async def http_admin(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("admin ok")


@app.route(route="slow", auth_level=func.AuthLevel.ANONYMOUS)
def http_slow(req: func.HttpRequest) -> str:
    time.sleep(float(req.params.get("seconds", "1")))
    return "finished"


@app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%", run_on_startup=True)
def tick(timer: func.TimerRequest) -> None:
    record("tick", {"past_due": timer.past_due, "schedule_status": timer.schedule_status})


@app.blob_trigger(arg_name="blob", path="%WATCH_CONTAINER%/{name}", connection="DataStorage")
def on_blob(blob: func.InputStream) -> None:
    metadata = blob.metadata or {}
    entry: dict[str, Any] = {
        "name": blob.name,
        "uri": blob.uri,
        "length": blob.length,
        "metadata": metadata,
        "content_type": (blob.blob_properties or {}).get("ContentType"),
        "etag": (blob.blob_properties or {}).get("ETag"),
    }
    if metadata.get("read") == "yes":
        digest, size = hashlib.sha256(), 0
        for chunk in iter(lambda: blob.read(65536), b""):
            digest.update(chunk)
            size += len(chunk)
        entry.update(sha256=digest.hexdigest(), read_bytes=size)
    entry["stream_type"] = f"{type(blob).__module__}.{type(blob).__qualname__}"
    record("on_blob", entry)
    misbehave(blob.name, metadata, entry["etag"])


def misbehave(name: str | None, metadata: dict[str, str], etag: object) -> None:
    """Metadata ``fail=yes``: the call raises; ``hang=once``: the first call of this blob version hangs, so a test
    can kill the host in the middle of it."""
    if metadata.get("fail") == "yes":
        raise ValueError(f"failing {name} on purpose")
    hung = os.path.join(os.environ["RECORD_DIR"], f"hung-{str(etag).strip(chr(34))}")
    if metadata.get("hang") == "once" and not os.path.exists(hung):
        open(hung, "w").close()
        time.sleep(600)


if os.environ.get("FIXTURE_EVENT_GRID_BLOB") == "1":

    @app.blob_trigger(
        arg_name="blob", path="%EVENT_CONTAINER%/{name}", connection="DataStorage", source=func.BlobSource.EVENT_GRID
    )
    def on_event_blob(blob: func.InputStream) -> None:
        etag = (blob.blob_properties or {}).get("ETag")
        record("on_event_blob", {"name": blob.name, "etag": etag})
        misbehave(blob.name, blob.metadata or {}, etag)


if os.environ.get("FIXTURE_BLOB_CLIENT") == "1":
    import azurefunctions.extensions.bindings.blob as blob_types

    @app.blob_trigger(arg_name="client", path="%CLIENT_CONTAINER%/{name}", connection="DataStorage")
    def on_blob_client(client: blob_types.BlobClient) -> None:
        properties = client.get_blob_properties()
        entry: dict[str, Any] = {
            "client_type": f"{type(client).__module__}.{type(client).__qualname__}",
            "client_id": id(client),
            "container": client.container_name,
            "blob": client.blob_name,
            "url": client.url,
            "size": properties.size,
            "etag": properties.etag,
        }
        if (properties.metadata or {}).get("read") == "yes":
            digest = hashlib.sha256()
            for chunk in client.download_blob().chunks():
                digest.update(chunk)
            entry["sha256"] = digest.hexdigest()
        record("on_blob_client", entry)


if os.environ.get("FIXTURE_SERVICEBUS") == "1":

    def _message_entry(msg: func.ServiceBusMessage) -> dict[str, Any]:
        return {
            "body": msg.get_body().decode(),
            "message_id": msg.message_id,
            "session_id": msg.session_id,
            "content_type": msg.content_type,
            "correlation_id": msg.correlation_id,
            "delivery_count": msg.delivery_count,
            "sequence_number": msg.sequence_number,
            "enqueued_time_utc": msg.enqueued_time_utc,
            "expires_at_utc": msg.expires_at_utc,
            "locked_until": msg.locked_until,
            "time_to_live": msg.time_to_live.total_seconds() if msg.time_to_live else None,
            "subject": msg.subject,
            "label": msg.label,
            "to": msg.to,
            "reply_to": msg.reply_to,
            "reply_to_session_id": msg.reply_to_session_id,
            "user_properties": msg.user_properties,
            "application_properties": msg.application_properties,
            "lock_token": msg.lock_token,
        }

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="%WORK_QUEUE%", connection="ServiceBus")
    @app.service_bus_queue_output(arg_name="$return", queue_name="%DONE_QUEUE%", connection="ServiceBus")
    def on_work(msg: func.ServiceBusMessage) -> str | None:
        entry = _message_entry(msg)
        record("on_work", entry)
        body = entry["body"]
        if body.startswith("fail-always"):
            raise RuntimeError("failing on purpose")
        if body.startswith("fail-once") and (msg.delivery_count or 0) <= 1:
            raise RuntimeError("failing the first delivery on purpose")
        return f"done:{body}"

    @app.service_bus_topic_trigger(
        arg_name="msg",
        topic_name="%EVENTS_TOPIC%",
        subscription_name="sessions",
        connection="ServiceBus",
        is_sessions_enabled=True,
    )
    @app.service_bus_queue_output(arg_name="out", queue_name="%DONE_QUEUE%", connection="ServiceBus")
    def on_session_event(msg: func.ServiceBusMessage, out: func.Out[str]) -> None:
        record("on_session_event", _message_entry(msg))
        out.set(f"session:{msg.session_id}:{msg.get_body().decode()}")

    @app.service_bus_queue_trigger(arg_name="msg", queue_name="slow", connection="ServiceBus")
    def on_slow(msg: func.ServiceBusMessage) -> None:
        # Runs longer than the queue's lock duration: the host must renew the lock.
        time.sleep(float(msg.get_body().decode()))
        record("on_slow", _message_entry(msg))

    @app.service_bus_queue_trigger(
        arg_name="msg", queue_name="slow-sessions", connection="ServiceBus", is_sessions_enabled=True
    )
    def on_slow_session(msg: func.ServiceBusMessage) -> None:
        # Runs longer than the session lock: the host must renew the session's lock, not the message's.
        time.sleep(float(msg.get_body().decode()))
        record("on_slow_session", _message_entry(msg))

    @app.service_bus_queue_trigger(arg_name="msgs", queue_name="batch", connection="ServiceBus", cardinality="many")
    # azure.functions' annotation check (the worker's too) accepts typing.List here, not the builtin list[...].
    def on_batch(msgs: typing.List[func.ServiceBusMessage]) -> None:  # noqa: UP006
        record(
            "on_batch",
            {
                "bodies": [m.get_body().decode() for m in msgs],
                "ids": [m.message_id for m in msgs],
                "delivery_counts": [m.delivery_count for m in msgs],
            },
        )
        # "slow:<seconds>": a batch that runs that long (messages keep arriving meanwhile)
        for body in (m.get_body().decode() for m in msgs):
            if body.startswith("slow:"):
                time.sleep(float(body.removeprefix("slow:")))

    @app.service_bus_queue_trigger(
        arg_name="msg", queue_name="manual", connection="ServiceBus", auto_complete_messages=False
    )
    def on_manual(msg: func.ServiceBusMessage) -> None:
        record("on_manual", _message_entry(msg))
