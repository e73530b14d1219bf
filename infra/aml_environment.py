"""The Azure ML environment for one MLflow model: the model's recorded requirements plus the scoring service's.

As Azure ML's no-code MLflow deployment does, the model's own pins win: a model saved with another
scikit-learn (or numpy, pandas, ...) gets that version, and packages only the model needs (xgboost, lightgbm,
...) are added. The scoring service's tested versions (``scoring/aml/conda.yml``) fill in the rest. Where the
two cannot both hold, it stops with an error that names the package, what the model recorded and what the
service needs (:data:`SERVICE_NEEDS`, or the service's exact pin for packages only the service uses).

``infra/deploy_aml.sh`` runs it; it writes ``conda.yml`` (and a copy of ``environment.yml`` that points at
it) into ``--out``::

    python infra/aml_environment.py --model scoring/model --service scoring/aml --out /tmp/env
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

# What the scoring service needs of the packages a model may pin too. Any version in these ranges serves it;
# scoring/aml/conda.yml holds the tested versions used when the model does not say.
SERVICE_NEEDS: Mapping[str, str] = {
    "mlflow": ">=3.0,<4",
    "scikit-learn": ">=1.3",
    "threadpoolctl": ">=3.1",  # threadpool_limits(limits=n); scikit-learn needs it too
    "scipy": ">=1.10",
    "numpy": ">=1.26",
    "pandas": ">=2.2",
    "pyarrow": ">=15",
    "cloudpickle": ">=3.0",
}
MIN_PYTHON = Version("3.11")


class EnvironmentConflict(ValueError):
    """The model's requirements and the scoring service's cannot both hold; the message says which."""


@dataclass(frozen=True)
class ModelRequirements:
    python: str | None
    requirements: tuple[Requirement, ...]


def read_model(model_dir: Path) -> ModelRequirements:
    """The requirements MLflow recorded with the model (``requirements.txt``, ``python_env.yaml``)."""
    if not (model_dir / "MLmodel").is_file():
        raise EnvironmentConflict(f"{model_dir}: no MLflow model (no MLmodel file)")
    python = None
    env_file = model_dir / "python_env.yaml"
    if env_file.is_file():
        python = str((yaml.safe_load(env_file.read_text()) or {}).get("python") or "") or None
    lines = (
        (model_dir / "requirements.txt").read_text().splitlines() if (model_dir / "requirements.txt").is_file() else []
    )
    return ModelRequirements(python, tuple(_requirements(lines, model_dir / "requirements.txt")))


def _requirements(lines: Iterable[str], where: Path) -> Iterable[Requirement]:
    for line in lines:
        text = line.split("#", 1)[0].strip()
        if not text or text.startswith("-"):
            continue  # options such as -r / --extra-index-url are not requirements
        try:
            yield Requirement(text)
        except InvalidRequirement as exc:
            raise EnvironmentConflict(f"{where}: {text!r} is not a requirement ({exc})") from exc


def _exact(requirement: Requirement) -> str | None:
    specs = list(requirement.specifier)
    return specs[0].version if len(specs) == 1 and specs[0].operator in ("==", "===") else None


def read_service(conda_file: Path) -> tuple[dict[str, Any], dict[str, Requirement]]:
    """The service's conda document and its pip requirements by canonical name."""
    document: dict[str, Any] = yaml.safe_load(conda_file.read_text())
    pip = next(d["pip"] for d in document["dependencies"] if isinstance(d, dict) and "pip" in d)
    return document, {canonicalize_name(r.name): r for r in _requirements(pip, conda_file)}


def merge(model: ModelRequirements, service: Mapping[str, Requirement]) -> list[str]:
    """The pip requirements of the environment; raises EnvironmentConflict naming every clash."""
    merged = {name: str(req) for name, req in service.items()}
    conflicts = []
    for req in model.requirements:
        name = canonicalize_name(req.name)
        if name not in service:
            merged[name] = str(req)
            continue
        needs = SpecifierSet(SERVICE_NEEDS.get(name, str(service[name].specifier)))
        pinned, tested = _exact(req), _exact(service[name])
        if pinned is not None:
            if needs.contains(pinned, prereleases=True):
                merged[name] = f"{service[name].name}=={pinned}"
            else:
                conflicts.append(
                    f"the model was saved with {req}; the scoring service needs {service[name].name}{needs}"
                )
        elif tested is not None and not req.specifier.contains(tested, prereleases=True):
            combined = SpecifierSet(f"{needs},{req.specifier}")
            merged[name] = f"{service[name].name}{combined}"
    if conflicts:
        raise EnvironmentConflict("; ".join(conflicts))
    return list(merged.values())


def python_version(model: ModelRequirements, service_python: str) -> str:
    if model.python is None:
        return service_python
    major_minor = ".".join(model.python.split(".")[:2])
    if Version(major_minor) < MIN_PYTHON:
        raise EnvironmentConflict(
            f"the model was saved with Python {model.python}; the scoring service needs >= {MIN_PYTHON}"
        )
    return major_minor


def build(model_dir: Path, service_dir: Path, out: Path) -> Path:
    """Writes ``conda.yml`` and ``environment.yml`` for ``model_dir`` into ``out``; returns the conda file."""
    document, service = read_service(service_dir / "conda.yml")
    model = read_model(model_dir)
    service_python = next(str(d).split("=", 1)[1] for d in document["dependencies"] if str(d).startswith("python="))
    pip = merge(model, service)
    document["dependencies"] = [
        f"python={python_version(model, service_python)}",
        *(d for d in document["dependencies"] if isinstance(d, str) and not re.match(r"^python\b", d)),
        {"pip": pip},
    ]
    out.mkdir(parents=True, exist_ok=True)
    conda = out / "conda.yml"
    conda.write_text(
        "# The scoring service's requirements merged with the model's own (infra/aml_environment.py).\n"
        + yaml.safe_dump(document, sort_keys=False)
    )
    shutil.copyfile(service_dir / "environment.yml", out / "environment.yml")
    return conda


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="the MLflow model folder")
    parser.add_argument("--service", type=Path, required=True, help="folder of conda.yml and environment.yml")
    parser.add_argument("--out", type=Path, required=True, help="where to write the environment's files")
    args = parser.parse_args(argv)
    try:
        print(build(args.model, args.service, args.out))
    except EnvironmentConflict as exc:
        print(f"aml_environment: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
