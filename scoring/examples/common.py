"""What every example's training does alike: pinned requirements and a safe output directory."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

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
