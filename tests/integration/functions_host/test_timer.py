"""Timer trigger through the real host process: NCRONTAB schedule, run on startup, past-due status in storage."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

from azure.storage.blob import BlobServiceClient

from tests.fixtures.azurite import Azurite

from .conftest import FixtureApp


def settings(azurite: Azurite, schedule: str, host_id: str) -> dict[str, str]:
    return {
        "AzureWebJobsStorage": azurite.connection_string,
        "DataStorage": azurite.connection_string,
        "WATCH_CONTAINER": f"watch-{uuid.uuid4().hex[:8]}",
        "TICK_SCHEDULE": schedule,
        "AzureFunctionsWebHost__hostid": host_id,
    }


def test_schedule_from_setting_fires_repeatedly(fixture_app: FixtureApp, azurite: Azurite) -> None:
    fixture_app.write_settings(settings(azurite, "*/1 * * * * *", f"timer-{uuid.uuid4().hex[:8]}"))
    fixture_app.start()
    entries = fixture_app.wait_for("tick", lambda e: len(e) >= 3, timeout=20)
    assert entries[0]["past_due"] is False  # run_on_startup
    # Schedules more frequent than once a minute are not monitored: no schedule status.
    assert all(e["schedule_status"] == {} for e in entries)


def test_missed_occurrence_is_reported_past_due(fixture_app: FixtureApp, azurite: Azurite) -> None:
    host_id = f"timer-{uuid.uuid4().hex[:8]}"
    fixture_app.write_settings(settings(azurite, "0 0 3 * * *", host_id))
    status_blob = f"timers/{host_id}/Host.Functions.tick/status"
    missed = (datetime.now(UTC) - timedelta(days=1)).replace(hour=3, minute=0, second=0, microsecond=0)
    old_status = {"Last": (missed - timedelta(days=1)).isoformat(), "Next": missed.isoformat(), "LastUpdated": "x"}
    with BlobServiceClient.from_connection_string(azurite.connection_string) as service:
        hosts = service.get_container_client("azure-webjobs-hosts")
        if not hosts.exists():
            hosts.create_container()
        hosts.upload_blob(status_blob, json.dumps(old_status), overwrite=True)
        fixture_app.start()

        entries = fixture_app.wait_for("tick", lambda e: len(e) >= 1)
        assert entries[0]["past_due"] is True
        assert entries[0]["schedule_status"]["Next"] == missed.isoformat()
        fixture_app.processes[-1].stop()
        assert len(fixture_app.recorded("tick")) == 1  # past due replaces run-on-startup, not both
        saved = json.loads(hosts.download_blob(status_blob).readall())
        next_due = datetime.fromisoformat(saved["Next"])
        assert next_due > datetime.now(UTC)
        assert (next_due.hour, next_due.minute, next_due.second) == (3, 0, 0)
