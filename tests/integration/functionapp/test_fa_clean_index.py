"""The deployed app's dependencies: requirements.txt alone installs what function_app.py imports, and the blob
trigger is indexed with the SDK-type (BlobClient) binding, so the host passes a reference, not the content."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
INDEXER = REPO / "tests" / "support" / "index_app.py"

pytestmark = pytest.mark.slow


def test_app_indexed_from_requirements_alone_binds_the_blob_trigger_as_an_sdk_type(tmp_path: Path) -> None:
    env_dir = tmp_path / "clean"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    python = env_dir / "bin" / "python"
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--disable-pip-version-check",
         "-r", str(REPO / "requirements.txt")],
        check=True, timeout=540,
    )  # fmt: skip
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "list", "--format=json"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    names = {package["name"].lower() for package in json.loads(installed)}
    assert "azurefunctions-extensions-bindings-blob" in names
    assert not names & {"async-inference", "pandas", "mlflow", "pytest"}, "the environment is not clean"

    env = {"PATH": os.environ.get("PATH", "")}
    # -I: no PYTHONPATH, no user site, not the script's folder: only the clean environment and the app itself.
    done = subprocess.run([str(python), "-I", str(INDEXER), str(REPO)], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {"submit_blob", "score_request", "write_result", "reconcile", "request_status"} <= set(report)
    submit = report["submit_blob"]
    assert submit["trigger_annotation"] == "azurefunctions.extensions.bindings.blob.blobClient.BlobClient"
    assert submit["sdk_type"] is True
    [binding] = submit["raw_bindings"]
    assert binding["type"] == "blobTrigger" and binding["connection"] == "DataStorage"
    assert binding["properties"] == {"SupportsDeferredBinding": True}, "the host would send the blob's content"
    assert not [name for name, function in report.items() if name != "submit_blob" and function["sdk_type"]]
