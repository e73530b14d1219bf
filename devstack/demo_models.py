"""The demo's extra model routes: two example models served beside the default, and the in-process check.

``python -m devstack demo`` starts the stack (when it is not running) with ``--model multiclass=DIR`` and
``--model regression=DIR``, the iris classifier and the diabetes regressor of ``python -m scoring.train``,
trained once into the stack's base dir. Every checked output is compared with its model's own in-process
predictions (MLflow's pyfunc ``predict`` on the same input file), so the summary shows that each file was
scored by the model its ``model`` metadata names.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from devstack.routes import ModelOption
from devstack.stack import PORT_SETTINGS, StackSettings, run_training
from shared.contracts import DEFAULT_MODEL, PREDICTION_COLUMN

# route -> example kind of ``python -m scoring.train --kind``
DEMO_ROUTES = {"multiclass": "multiclass", "regression": "regression"}


def train_route_models(settings: StackSettings, report: Callable[[str], None]) -> list[ModelOption]:
    """The demo routes' models, trained into ``<base>/demo-models/<kind>`` the first time."""
    options = []
    for route, kind in DEMO_ROUTES.items():
        folder = settings.base_dir / "demo-models" / kind
        if not (folder / "MLmodel").is_file():
            report(f"training the {kind} example model for route {route} (python -m scoring.train --kind {kind})")
            run_training(settings, folder, "demo-train.log", f"the {kind} example", "--kind", kind)
        options.append(ModelOption(route, folder))
    return options


def with_demo_routes(settings: StackSettings, options: list[ModelOption]) -> StackSettings:
    """``settings`` (same base dir and ports) serving the demo routes too."""
    ports = {name: getattr(settings, name) for name in PORT_SETTINGS}
    loaded = StackSettings.load(settings.base_dir, ports, options)
    return replace(loaded, extra_settings=settings.extra_settings)


def model_dir_of(settings: StackSettings, route: str) -> Path | None:
    if route == DEFAULT_MODEL:
        return settings.model_dir
    return next((m.model_dir for m in settings.models if m.name == route), None)


def _frame(data: bytes, name: str):  # type: ignore[no-untyped-def]  # pandas is imported lazily
    import pandas as pd

    if name.endswith(".gz"):
        data, name = gzip.decompress(data), name[:-3]
    if name.endswith(".csv"):
        return pd.read_csv(io.BytesIO(data))
    if name.endswith(".parquet"):
        return pd.read_parquet(io.BytesIO(data))
    return pd.DataFrame([json.loads(line) for line in data.decode().splitlines() if line.strip()])


def prediction_mismatches(model_dir: Path, source: bytes, output: bytes, name: str) -> int:
    """Rows whose ``prediction`` differs from the model's in-process one (numbers within 1e-9)."""
    import mlflow

    inputs, scored = _frame(source, name), _frame(output, name)
    if len(inputs) != len(scored):
        return abs(len(inputs) - len(scored)) or 1
    model = mlflow.pyfunc.load_model(str(model_dir))
    schema = model.metadata.get_input_schema()
    for spec in schema.inputs if schema is not None else []:
        if spec.name in inputs:  # a CSV reads 1 and 2 as integers where the signature says double
            inputs[spec.name] = inputs[spec.name].astype(spec.type.to_pandas())
    expected = model.predict(inputs)
    expected = list(expected.iloc[:, 0] if hasattr(expected, "iloc") and expected.ndim == 2 else expected)
    wrong = 0
    for got, want in zip(scored[PREDICTION_COLUMN].tolist(), expected, strict=True):
        if isinstance(want, float) or (hasattr(want, "dtype") and getattr(want.dtype, "kind", "") == "f"):
            wrong += abs(float(got) - float(want)) > 1e-9 * max(1.0, abs(float(want)))
        else:
            wrong += str(got) != str(want)
    return wrong
