"""Load the product's function app afresh for a test, in this process or in a clean one.

``FunctionApp.get_functions()`` may be called only once per app object (a second call finds the names it
recorded the first time and raises), and the trigger modules read settings when they register their
functions. So each test that indexes the app re-imports those modules under its current environment
(:func:`fresh_function_app`), or indexes it in a fresh interpreter with only the settings it names
(:func:`indexed_bindings`, :func:`run_python`).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import azure.functions as func

REPO = Path(__file__).resolve().parents[2]
_INDEX = (
    "import json, function_app\n"
    "print(json.dumps({f.get_function_name(): json.loads(f.get_function_json())['bindings']"
    " for f in function_app.app.get_functions()}))"
)


def fresh_function_app() -> func.FunctionApp:
    import function_app
    import shared.triggers.score_request
    import shared.triggers.submit_blob

    importlib.reload(shared.triggers.submit_blob)
    importlib.reload(shared.triggers.score_request)
    return importlib.reload(function_app).app


def run_python(code: str, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -c code`` at the repository root with only ``env`` and a plain PATH set, output captured."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def indexed_bindings(env: Mapping[str, str]) -> dict[str, list[dict[str, Any]]]:
    """Function name -> bindings, as the worker indexes function_app.py with the settings in ``env``."""
    done = run_python(_INDEX, env)
    assert done.returncode == 0, f"indexing function_app.py failed:\n{done.stderr}"
    result: dict[str, list[dict[str, Any]]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result
