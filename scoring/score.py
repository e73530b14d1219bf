"""Azure ML entry script (``scoring_script``) for any MLflow model under the AML inference server.

``init()`` runs once per server worker: it reads the settings, loads the MLflow model found under
``AZUREML_MODEL_DIR`` (see ``scoring.service.model``: a model the service cannot serve stops the start
with a message saying what to change) and, when a Service Bus setting is present, starts the async
workers.
``run(request)`` is decorated with ``@rawhttp``, so the server hands it the Flask request as it came:
the body is read once as bytes (an undecorated ``run`` gets it decoded to ``str`` first, a copy of
every byte, only for the service to parse it again), in one pass where gunicorn serves it (see
``scoring.service.body``), and its ``Content-Type`` chooses between a JSON body and a ``text/csv``
body. ``run`` returns an ``AMLResponse`` so the status code (200, 202, 400, 405, 413, 415, 429, 503)
and headers such as ``Retry-After`` reach the caller. The design (sync and async paths, bounded queue,
worker threads, streaming, result publishing) is described in the ``scoring.service`` package docstring.

The server imports this file as a loose module, so the repository root (the parent of ``scoring/``) is
put on ``sys.path`` to make ``scoring`` and ``shared`` importable wherever the code folder is mounted.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

_ROOT = str(Path(__file__).resolve().parents[1])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from azureml_inference_server_http.api.aml_request import rawhttp  # noqa: E402
from azureml_inference_server_http.api.aml_response import AMLResponse  # noqa: E402

from scoring.service.app import ScoringService  # noqa: E402
from scoring.service.body import request_body  # noqa: E402
from scoring.service.settings import ScoringSettings  # noqa: E402
from shared.telemetry import logs, pipeline, setup  # noqa: E402

_service: ScoringService | None = None


def init() -> None:
    global _service
    # The server configures only its own loggers (the root logger is left at WARNING): give the service's
    # loggers their own handler, in the server's line format, and keep the Azure SDKs' per-request HTTP
    # logging out of the service log.
    service_logger = logging.getLogger("scoring")
    if not service_logger.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname).1s [%(process)d] %(name)s [trace=%(trace_id)s request=%(request_id)s]"
                " - %(message)s"
            )
        )
        service_logger.addHandler(handler)
        service_logger.setLevel(logging.INFO)
        service_logger.propagate = False
    logging.getLogger("azure").setLevel(logging.WARNING)
    # After the fork into this worker: exporter threads belong to the process that uses them.
    logs.install()
    setup.configure("scoring")
    _service = ScoringService.start(ScoringSettings.from_env())


@rawhttp
def run(request: Any) -> AMLResponse:
    # With @rawhttp every method reaches run(); the server answered OPTIONS with an empty 200 before.
    if request.method == "OPTIONS":
        return AMLResponse("", 200)
    if request.method != "POST":
        return AMLResponse({"message": "POST a JSON or text/csv body to /score"}, 405, {"Allow": "POST"}, json_str=True)
    if _service is None:
        return AMLResponse({"message": "the scoring service is not initialised"}, 503, json_str=True)
    with pipeline.server_span(request.headers) as span:
        reply = _service.handle(request_body(request), request.mimetype)
        span.set_attribute(pipeline.HTTP_STATUS, reply.status)
    return AMLResponse(reply.body, reply.status, reply.headers)
