"""Azure Functions entry point (Python v2 programming model): logging and blueprint registration only."""

from __future__ import annotations

import logging

import azure.functions as func

from shared.triggers import reconcile, request_status, score_request, submit_blob, write_result

logging.getLogger("azure").setLevel(logging.WARNING)
logging.getLogger("urllib3").setLevel(logging.WARNING)
logging.getLogger("shared").setLevel(logging.INFO)

app = func.FunctionApp()
for module in (submit_blob, score_request, write_result, reconcile, request_status):
    app.register_functions(module.bp)
