"""Offline checks of the Bicep templates and the azd project (no Bicep compiler or Azure here).

Each template must parse (pycep's grammar), reference only module and JSON files that exist, use every
parameter it declares, and be called with exactly the parameters its module declares (all required ones
present). main.parameters.json and azure.yaml must point at what exists; the outputs the scripts read must
be outputs of main.bicep.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.infra.bicep_model import INFRA, REPO, module_body, parse

TEMPLATES = sorted(INFRA.rglob("*.bicep"))
IDENTIFIER = r"(?<![A-Za-z0-9_.'$]){}(?![A-Za-z0-9_])"


def strip_comments(text: str) -> str:
    return "\n".join(re.sub(r"//.*$", "", line) for line in text.splitlines())


def test_templates_exist() -> None:
    assert INFRA / "main.bicep" in TEMPLATES
    assert len(TEMPLATES) >= 8, [p.name for p in TEMPLATES]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(INFRA)))
def test_template_parses(path: Path) -> None:
    parse(path)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(INFRA)))
def test_referenced_files_exist(path: Path) -> None:
    text = path.read_text()
    for module in re.findall(r"^module \w+ '([^']+)'", text, re.MULTILINE):
        assert (path.parent / module).is_file(), f"{path.name}: module {module} does not exist"
    for loaded in re.findall(r"load(?:Json|Text)Content\('([^']+)'", text):
        assert (path.parent / loaded).is_file(), f"{path.name}: {loaded} does not exist"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_parameter_is_used(path: Path) -> None:
    body = strip_comments(path.read_text())
    for param in parse(path).get("parameters", {}):
        uses = re.findall(IDENTIFIER.format(re.escape(param)), body)
        # One occurrence is the declaration itself.
        assert len(uses) >= 2, f"{path.name}: parameter {param} is declared but never used"


def module_calls() -> list[tuple[Path, str, Path, dict[str, Any]]]:
    calls = []
    for path in TEMPLATES:
        for symbol, module in parse(path).get("modules", {}).items():
            target = (path.parent / module["detail"]["path"]).resolve()
            calls.append((path, symbol, target, module_body(module).get("params", {})))
    return calls


@pytest.mark.parametrize("call", module_calls(), ids=lambda c: f"{c[0].name}:{c[1]}")
def test_module_calls_match_module_parameters(call: tuple[Path, str, Path, dict[str, Any]]) -> None:
    caller, symbol, target, passed = call
    declared = parse(target).get("parameters", {})
    unknown = set(passed) - set(declared)
    assert not unknown, f"{caller.name}: module {symbol} passes undeclared parameters {sorted(unknown)}"
    required = {name for name, spec in declared.items() if spec.get("default") is None}
    missing = required - set(passed)
    assert not missing, f"{caller.name}: module {symbol} misses required parameters {sorted(missing)}"


def test_azd_parameters_file_matches_main() -> None:
    declared = parse(INFRA / "main.bicep")["parameters"]
    params = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(params) <= set(declared), sorted(set(params) - set(declared))
    required = {name for name, spec in declared.items() if spec.get("default") is None}
    assert required <= set(params), f"azd cannot supply {sorted(required - set(params))}"
    for name, spec in params.items():
        allowed = next((d["argument"] for d in declared[name]["decorators"] if d["type"] == "allowed"), None)
        default = re.fullmatch(r"\$\{[A-Z_]+=(.*)\}", str(spec["value"]))
        if allowed and default:
            assert default.group(1) in allowed, f"{name}: default {default.group(1)!r} is not allowed"


def test_azure_yaml_points_at_the_app_and_the_templates() -> None:
    project = yaml.safe_load((INFRA / "azure.yaml").read_text())
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*[a-z0-9]", project["name"])
    infra = project["infra"]
    assert infra["provider"] == "bicep"
    assert (INFRA / infra["path"] / f"{infra['module']}.bicep").is_file()
    names = json.loads((INFRA / "names.json").read_text())
    service = project["services"][names["azdServiceName"]]
    assert (service["host"], service["language"]) == ("function", "python")
    root = (INFRA / service["project"]).resolve()
    assert root == REPO
    for required in ("function_app.py", "host.json", "requirements.txt"):
        assert (root / required).is_file(), f"the service folder has no {required}"
    for hook in project.get("hooks", {}).values():
        script = INFRA / hook["posix"]["run"]
        assert script.is_file(), script
    tag = "'azd-service-name': azdServiceName"
    assert tag in (INFRA / "modules" / "functionapp.bicep").read_text(), "azd finds the app by this tag"


def test_outputs_the_scripts_read_exist() -> None:
    outputs = set(parse(INFRA / "main.bicep")["outputs"])
    for script in (INFRA / "deploy_aml.sh", INFRA / "hooks" / "postdeploy.sh"):
        used = set(re.findall(r"\b(AZURE_[A-Z_]+)\b", script.read_text()))
        assert used <= outputs, f"{script.name} reads {sorted(used - outputs)}, which main.bicep does not output"


def test_package_leaves_out_local_and_infra_files() -> None:
    """azd and func zip the repository root; .funcignore keeps local state and tooling out of the package."""
    ignore = (REPO / ".funcignore").read_text().split()
    # *_env: the virtual environment azd creates in the service folder when it restores dependencies.
    for entry in (".venv", "*_env", "infra", "tests", "local.settings.json", "node_modules", ".devstack"):
        assert any(line.strip("/") == entry for line in ignore), f".funcignore does not exclude {entry}"
