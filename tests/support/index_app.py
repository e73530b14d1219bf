"""Run by a clean interpreter: index ``function_app.py`` as the Python worker does and print what it reports.

Usage: ``python -I index_app.py SCRIPT_ROOT``. Prints JSON: each function's name and its bindings as the worker
sends them to the host (``get_raw_bindings`` of azurefunctions-extensions-base, which marks SDK-type
parameters ``SupportsDeferredBinding``), and each trigger parameter's annotation.
"""

from __future__ import annotations

import json
import sys
import typing
from types import SimpleNamespace


def main(script_root: str) -> None:
    sys.path.insert(0, script_root)
    from azurefunctions.extensions.base import get_binding_registry
    from azurefunctions.extensions.base.utils import get_raw_bindings

    import function_app

    registry = get_binding_registry()
    report = {}
    for function in function_app.app.get_functions():
        hints = typing.get_type_hints(function.get_user_function())
        input_types = {name: SimpleNamespace(pytype=hint) for name, hint in hints.items() if name != "return"}
        raw, _ = get_raw_bindings(function, input_types)
        trigger = function.get_trigger()
        annotation = hints.get(trigger.name)
        report[function.get_function_name()] = {
            "raw_bindings": [json.loads(binding) for binding in raw],
            "trigger_annotation": None if annotation is None else f"{annotation.__module__}.{annotation.__qualname__}",
            "sdk_type": bool(annotation is not None and registry.check_supported_type(annotation)),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1])
