"""The Azure ML specs in scoring/aml load with azure-ai-ml and agree with the scoring code."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.utils import canonicalize_name

from scoring.service.settings import DEFAULT_RESULT_TOPIC, DEFAULT_RESULTS_CONTAINER, ScoringSettings
from tests.support.imports import import_graph, reachable, third_party_imports

REPO = Path(__file__).resolve().parents[3]
AML = REPO / "scoring" / "aml"

pytestmark = pytest.mark.filterwarnings("ignore")  # azure-ai-ml warns on import (marshmallow)


class ReadingEnv(dict[str, str]):
    """An environment mapping that records which names the settings read."""

    def __init__(self, values: dict[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)


def conda_pins() -> dict[str, str]:
    """The `==` pins of scoring/aml/conda.yml, package -> version."""
    return dict(
        line.strip().removeprefix("- ").split("==")
        for line in (AML / "conda.yml").read_text().splitlines()
        if "==" in line
    )


def test_environment_pins_what_the_score_script_needs() -> None:
    from azure.ai.ml import load_environment

    environment = load_environment(source=AML / "environment.yml")
    assert environment.image and environment.conda_file
    pins = conda_pins()
    for package in ("azureml-inference-server-http", "mlflow", "scikit-learn", "pandas", "pyarrow", "cloudpickle",
                    "msgspec", "azure-servicebus", "azure-storage-blob", "azure-identity"):  # fmt: skip
        assert package in pins, package
    # Every pin is the version the tests run with: pyproject.toml's scoring extra pins the same ones.
    assert {package: importlib.metadata.version(package) for package in pins} == pins
    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["scoring"]
    assert dict(requirement.split("==") for requirement in extra) == pins
    # The model's own requirements (written by scoring.train) are satisfied by the environment.
    model_requirements = REPO / "scoring" / "model" / "requirements.txt"
    if model_requirements.exists():
        for line in model_requirements.read_text().split():
            name, _, version = line.partition("==")
            assert pins.get(name) == version, line


def test_endpoint_uses_key_auth() -> None:
    from azure.ai.ml import load_online_endpoint

    endpoint = load_online_endpoint(source=AML / "endpoint.yml")
    assert endpoint.auth_mode == "key"


def test_deployment_agrees_with_the_code() -> None:
    from azure.ai.ml import load_online_deployment

    deployment = load_online_deployment(source=AML / "deployment.yml")
    code_root = (AML / str(deployment.code_configuration.code)).resolve()
    assert code_root == REPO
    assert (code_root / deployment.code_configuration.scoring_script) == REPO / "scoring" / "score.py"
    assert deployment.request_settings.request_timeout_ms > 0
    assert deployment.request_settings.max_concurrent_requests_per_instance >= 1
    assert deployment.liveness_probe is not None and deployment.readiness_probe is not None
    assert deployment.app_insights_enabled is True
    env = dict(deployment.environment_variables)
    assert env["RESULT_TOPIC"] == DEFAULT_RESULT_TOPIC
    assert env["RESULTS_CONTAINER"] == DEFAULT_RESULTS_CONTAINER
    topics = json.loads((REPO / "infra" / "servicebus-entities.json").read_text())["UserConfig"]["Namespaces"][0]
    assert env["RESULT_TOPIC"] in {t["Name"] for t in topics["Topics"]}
    # Every variable the deployment sets is one the service reads (or one of the server's own).
    reading = ReadingEnv({"AZUREML_MODEL_DIR": "/m"})
    ScoringSettings.from_env(reading)
    server_settings = {"WORKER_COUNT"}
    assert set(env) - server_settings <= reading.read
    # The placeholders are refused until infra/deploy_aml.sh replaces them.
    with pytest.raises(ValueError, match="RESULT_SERVICEBUS_NAMESPACE still holds a template placeholder"):
        ScoringSettings.from_env({**env, "AZUREML_MODEL_DIR": "/m"})
    filled = {k: re.sub(r"<[^>]+>", "x", v) for k, v in env.items()}
    assert ScoringSettings.from_env({**filled, "AZUREML_MODEL_DIR": "/m"}).async_enabled


def test_amlignore_keeps_the_code_the_score_script_imports() -> None:
    patterns = [p.strip() for p in (REPO / ".amlignore").read_text().splitlines() if p.strip() and p[0] != "#"]

    def ignored(path: str) -> bool:
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) + "/" for i in range(len(parts) - 1)]
        return any(fnmatch.fnmatch(path, p) or any(fnmatch.fnmatch(d, p) for d in prefixes) for p in patterns)

    for needed in ("scoring/score.py", "scoring/service/app.py", "shared/contracts.py", "shared/__init__.py"):
        assert not ignored(needed), needed
    for unwanted in ("tests/conftest.py", ".venv/bin/python", "scoring/model/MLmodel", "node_modules/x/y.js"):
        assert ignored(unwanted), unwanted
    assert yaml.safe_load((AML / "deployment.yml").read_text())["code_configuration"]["code"] == "../.."


def installed_modules() -> dict[str, set[str]]:
    """Every importable dotted module (and package folder) of the installed distributions -> their names."""
    owners: dict[str, set[str]] = {}
    for dist in importlib.metadata.distributions():
        name = canonicalize_name(dist.metadata["Name"])
        for file in dist.files or ():
            if file.suffix not in (".py", ".so") or file.parts[0].endswith((".dist-info", ".data")):
                continue
            parts = [*file.parts[:-1], *([] if file.stem == "__init__" else [file.name.split(".")[0]])]
            for end in range(1, len(parts) + 1):
                owners.setdefault(".".join(parts[:end]), set()).add(name)
    return owners


def test_every_package_the_scoring_service_imports_is_in_its_environment() -> None:
    """What the AML server runs (scoring/score.py and all it imports, lazily or not, shared/ included) imports
    only packages that conda.yml installs: a package that merely comes along with another may not."""
    pins = {canonicalize_name(name) for name in conda_pins()}
    graph = import_graph()
    roots = ["scoring.score", *(module for module in graph if module.startswith("scoring.service"))]
    owners = installed_modules()
    undeclared = {}
    for name in third_party_imports(reachable(graph, roots)):
        parts = name.split(".")
        module = next(".".join(parts[:end]) for end in range(len(parts), 0, -1) if ".".join(parts[:end]) in owners)
        if not owners[module] & pins:
            undeclared[name] = sorted(owners[module])
    assert undeclared == {}, f"imported by the scoring service but not in scoring/aml/conda.yml: {undeclared}"
