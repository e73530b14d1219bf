"""What every example's training does alike: pinned requirements, a safe output directory, the saved model."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path
from typing import Any

SKLEARN_PACKAGES = ("mlflow", "scikit-learn", "skops", "numpy", "scipy", "pandas")


def pinned(packages: tuple[str, ...]) -> list[str]:
    """``name==version`` of the installed packages (MLflow's own inference would load the model in a
    subprocess and list every package of the training environment)."""
    return [f"{name}=={importlib.metadata.version(name)}" for name in packages]


def clear_model_dir(out: Path) -> str:
    """Remove an earlier model at ``out`` (never a directory that is not an MLflow model); the path as text."""
    if out.exists():
        if not (out / "MLmodel").exists() and any(out.iterdir()):
            raise SystemExit(f"--out {out} exists and is not an MLflow model directory; refusing to replace it")
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return str(out)


def save_example(model: Any, out: Path, x: Any, metadata: dict[str, Any], **options: Any) -> None:
    """Save a fitted scikit-learn example at ``out`` as MLflow model: its signature from its predictions on
    ``x`` (a DataFrame), the first three rows of ``x`` as input example, pinned requirements, ``metadata``;
    ``options`` go to ``mlflow.sklearn.save_model`` as they are."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    mlflow.sklearn.save_model(
        model,
        clear_model_dir(out),
        signature=infer_signature(x, model.predict(x)),
        input_example=x.head(3),
        pip_requirements=pinned(SKLEARN_PACKAGES),
        metadata=metadata,
        **options,
    )
