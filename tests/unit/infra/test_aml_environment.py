"""infra/aml_environment.py: the AML environment is the model's recorded requirements plus the service's."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.unit.infra.bicep_model import INFRA, REPO

SERVICE = REPO / "scoring" / "aml"


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("aml_environment", INFRA / "aml_environment.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


aml_environment = load_module()


def model(tmp_path: Path, requirements: str, python: str = "3.11.7") -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "MLmodel").write_text("flavors:\n  python_function: {}\n")
    (folder / "requirements.txt").write_text(requirements)
    (folder / "python_env.yaml").write_text(f"python: {python}\ndependencies:\n- -r requirements.txt\n")
    return folder


def built(tmp_path: Path, requirements: str, python: str = "3.11.7") -> tuple[str, dict[str, str]]:
    conda = aml_environment.build(model(tmp_path, requirements, python), SERVICE, tmp_path / "env")
    document = yaml.safe_load(conda.read_text())
    pip = next(d["pip"] for d in document["dependencies"] if isinstance(d, dict))
    python_line = next(d for d in document["dependencies"] if isinstance(d, str) and d.startswith("python="))
    return python_line, {line.split("=")[0].split(">")[0].split("<")[0]: line for line in pip}


def service_pin(name: str) -> str:
    _, service = aml_environment.read_service(SERVICE / "conda.yml")
    return str(service[name])


def test_the_models_own_versions_win_and_its_extra_packages_are_added(tmp_path: Path) -> None:
    python, pip = built(tmp_path, "mlflow==3.1.0\nscikit-learn==1.5.2\nnumpy==2.0.1\nxgboost==2.1.1  # extra\n-r x\n")
    assert pip["scikit-learn"] == "scikit-learn==1.5.2"
    assert pip["numpy"] == "numpy==2.0.1"
    assert pip["mlflow"] == "mlflow==3.1.0"
    assert pip["xgboost"] == "xgboost==2.1.1"
    assert pip["azureml-inference-server-http"] == service_pin("azureml-inference-server-http")
    assert pip["pandas"] == service_pin("pandas"), "what the model does not pin keeps the tested version"
    assert python == "python=3.11"
    assert (tmp_path / "env" / "environment.yml").read_text() == (SERVICE / "environment.yml").read_text()


def test_the_example_model_gets_the_tested_environment(tmp_path: Path) -> None:
    _, pip = built(tmp_path, (REPO / "scoring" / "model" / "requirements.txt").read_text())
    _, service = aml_environment.read_service(SERVICE / "conda.yml")
    assert sorted(pip.values()) == sorted(str(r) for r in service.values())


def test_an_unpinned_requirement_keeps_the_tested_version_or_narrows_it(tmp_path: Path) -> None:
    _, pip = built(tmp_path, "mlflow\nscikit-learn<1.6\n")
    assert pip["mlflow"] == service_pin("mlflow")
    assert pip["scikit-learn"] == "scikit-learn<1.6,>=1.3"


@pytest.mark.parametrize(
    ("requirements", "python", "message"),
    [
        ("pandas==1.5.3\n", "3.11.7", "saved with pandas==1.5.3; the scoring service needs pandas>=2.2"),
        ("mlflow==2.9.2\n", "3.11.7", "mlflow==2.9.2; the scoring service needs mlflow<4,>=3.0"),
        ("azure-core==1.30.0\n", "3.11.7", "azure-core==1.30.0; the scoring service needs azure-core==1.41.0"),
        ("scikit-learn==1.5.2\n", "3.10.12", "Python 3.10.12; the scoring service needs >= 3.11"),
        ("not a requirement!\n", "3.11.7", "is not a requirement"),
    ],
)
def test_conflicts_name_the_package_and_both_sides(
    tmp_path: Path, requirements: str, python: str, message: str
) -> None:
    with pytest.raises(aml_environment.EnvironmentConflict, match=message.replace("(", r"\(").replace(")", r"\)")):
        built(tmp_path, requirements, python)


def test_the_command_line_reports_a_conflict_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = model(tmp_path, "pandas==1.5.3\n")
    assert aml_environment.main(["--model", str(folder), "--service", str(SERVICE), "--out", str(tmp_path / "e")]) == 1
    assert "aml_environment: error: the model was saved with pandas==1.5.3" in capsys.readouterr().err
    assert (
        aml_environment.main(["--model", str(tmp_path), "--service", str(SERVICE), "--out", str(tmp_path / "e")]) == 1
    )
    assert "no MLflow model" in capsys.readouterr().err
