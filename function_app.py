"""Azure Functions entry point (Python v2 programming model): logging, telemetry, the limits check, blueprints."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import azure.functions as func

from shared.limits import check_startup
from shared.telemetry import logs, setup
from shared.triggers import reconcile, request_status, score_request, status, submit_blob, write_result

logs.install()
setup.configure("function-app")
logging.getLogger("azure").setLevel(logging.WARNING)
logging.getLogger("urllib3").setLevel(logging.WARNING)
logging.getLogger("shared").setLevel(logging.INFO)

# Fails indexing, naming the settings, when host.json and the app's settings contradict each other.
check_startup(os.environ, Path(__file__).with_name("host.json"))

app = func.FunctionApp()
for module in (submit_blob, score_request, write_result, reconcile, request_status, status):
    app.register_functions(module.bp)
