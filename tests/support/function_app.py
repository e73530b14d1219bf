"""Load the product's function app afresh for a test.

``FunctionApp.get_functions()`` may be called only once per app object (a second call finds the names it
recorded the first time and raises), and the trigger modules read settings when they register their
functions. So each test that indexes the app re-imports those modules under its current environment.
"""

from __future__ import annotations

import importlib

import azure.functions as func


def fresh_function_app() -> func.FunctionApp:
    import function_app
    import shared.triggers.score_request
    import shared.triggers.submit_blob

    importlib.reload(shared.triggers.submit_blob)
    importlib.reload(shared.triggers.score_request)
    return importlib.reload(function_app).app
