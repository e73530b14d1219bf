#!/usr/bin/env bash
# Deploys one model route (models.json) to the Azure ML managed online endpoint and wires it to the function app:
#   1. workspace (created if missing), 2. the MLflow model (a local folder, registered once per content hash,
#   or an already registered azureml:NAME:VERSION), 3. the environment, 4. the endpoint, 5. the endpoint
#   identity's roles (Service Bus Data Sender on the result topic, Storage Blob Data Contributor on the results
#   container), 6. the deployment named after the route (the default route takes all unpinned traffic; the
#   function app pins every route to its deployment with SCORING_DEPLOYMENT__<ROUTE>), 7. the scoring URI and
#   key as Key Vault secrets, referenced by the function app's settings.
# Re-running is safe: existing assets are reused or updated, never duplicated.
#
# Inputs are the outputs of infra/main.bicep. They are read from the environment, or from
# `azd env get-values` when azd is installed and the variables are not set.
# Usage: infra/deploy_aml.sh [--model DIR|azureml:NAME:VERSION] [--route NAME] [--dry-run]
#   --model    the MLflow model: a local folder (default scoring/model) or a registered azureml:NAME:VERSION
#   --route    the model route it serves, declared in models.json (default: default)
#   --dry-run  print (to stderr) the Azure CLI commands that change something instead of running them
#              (read-only queries print placeholders); needs no Azure login.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "${here}/.." && pwd)"
aml_dir="${repo}/scoring/aml"
model_source="${repo}/scoring/model"
route="default"
dry_run=0

log() { echo "deploy_aml: $*" >&2; }
fail() {
  log "error: $*"
  exit 1
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    --model)
      [[ $# -ge 2 ]] || fail "--model needs a folder or azureml:NAME:VERSION"
      model_source="$2"
      shift 2
      ;;
    --route)
      [[ $# -ge 2 ]] || fail "--route needs a route name from models.json"
      route="$2"
      shift 2
      ;;
    --dry-run)
      dry_run=1
      shift
      ;;
    -h | --help)
      sed -n '2,18p' "${BASH_SOURCE[0]}"
      exit 0
      ;;
    *) fail "unknown argument: $1 (see --help)" ;;
  esac
done

command -v python3 >/dev/null || fail "python3 is required (it reads infra/names.json)"

# shellcheck source-path=SCRIPTDIR source=names.sh
source "${here}/names.sh"

# Changes something in Azure: printed (to stderr, in order with the log) instead of run with --dry-run.
az_change() {
  if ((dry_run)); then
    {
      printf 'az'
      printf ' %q' "$@"
      printf '\n'
    } >&2
  else
    az "$@"
  fi
}

# Reads from Azure. $1 = "probe": a lookup that may find nothing (prints nothing then); "value": must work.
# $2 = the placeholder --dry-run prints for a value.
az_read() {
  local mode="$1" placeholder="$2"
  shift 2
  if ((dry_run)); then
    [[ "$mode" == "probe" ]] || echo "<${placeholder}>"
  elif [[ "$mode" == "probe" ]]; then
    az "$@" 2>/dev/null || true
  else
    az "$@"
  fi
}

content_hash() {
  python3 -c 'import hashlib, pathlib, sys
digest = hashlib.sha256()
for root in sys.argv[1:]:
    base = pathlib.Path(root)
    files = sorted(p for p in base.rglob("*") if p.is_file()) if base.is_dir() else [base]
    for path in files:
        digest.update(str(path.relative_to(base.parent)).encode())
        digest.update(path.read_bytes())
print(digest.hexdigest()[:16])' "$@"
}

load_outputs() {
  if [[ -z "${AZURE_RESOURCE_GROUP:-}" ]] && command -v azd >/dev/null; then
    log "reading the Bicep outputs from 'azd env get-values'"
    local line key value
    while IFS= read -r line; do
      key="${line%%=*}"
      value="${line#*=}"
      value="${value#\"}"
      value="${value%\"}"
      [[ "$key" =~ ^[A-Z_][A-Z0-9_]*$ ]] && export "${key}=${value}"
    done < <(cd "$here" && azd env get-values)
  fi
  local var missing=()
  for var in AZURE_RESOURCE_GROUP AZURE_LOCATION AZURE_ML_WORKSPACE AZURE_ML_ENDPOINT AZURE_SERVICEBUS_NAMESPACE \
    AZURE_SERVICEBUS_FQDN AZURE_STORAGE_ACCOUNT_NAME AZURE_STORAGE_BLOB_ENDPOINT AZURE_KEY_VAULT_NAME \
    AZURE_FUNCTION_APP_NAME; do
    [[ -n "${!var:-}" ]] || missing+=("$var")
  done
  ((${#missing[@]} == 0)) || fail "not set: ${missing[*]} (outputs of infra/main.bicep; run 'azd provision' first)"
}

ensure_role() {
  local principal="$1" role="$2" scope="$3" existing
  existing="$(az_read probe "" role assignment list --assignee "$principal" --role "$role" --scope "$scope" \
    --query "length(@)" --output tsv)"
  if [[ "${existing:-0}" != "0" ]]; then
    log "role '${role}' already granted on ${scope##*/providers/}"
    return
  fi
  log "granting '${role}' on ${scope##*/providers/}"
  az_change role assignment create --assignee-object-id "$principal" --assignee-principal-type ServicePrincipal \
    --role "$role" --scope "$scope" --output none
}

# Writes a secret from a private temporary file (never on a command line) and prints its versioned id.
set_secret() {
  local name="$1" value="$2" file
  if ((dry_run)); then
    az_change keyvault secret set --vault-name "$AZURE_KEY_VAULT_NAME" --name "$name" --file "<private file>" \
      --query id --output tsv
    echo "<id of secret ${name}>"
    return
  fi
  file="$(mktemp)"
  chmod 600 "$file"
  printf '%s' "$value" >"$file"
  az keyvault secret set --vault-name "$AZURE_KEY_VAULT_NAME" --name "$name" --file "$file" --encoding utf-8 \
    --query id --output tsv
  rm -f "$file"
}

# The route must be declared in models.json: the function app, its subscriptions and the deployment pin follow from it.
check_route() {
  python3 -c 'import json, sys
routes = [r["model"] for r in json.load(open(sys.argv[1]))["routes"]]
sys.exit(0 if sys.argv[2] in routes else "route %r is not declared in models.json (declared: %s); add it there first" % (sys.argv[2], ", ".join(routes)))' \
    "${repo}/models.json" "$route"
}

# The environment: the service's requirements merged with the model's own (infra/aml_environment.py).
build_environment() {
  local model_dir="$1" out="$2" python="${repo}/.venv/bin/python"
  [[ -x "$python" ]] || python=python3
  "$python" "${here}/aml_environment.py" --model "$model_dir" --service "$aml_dir" --out "$out" >/dev/null ||
    fail "the model's requirements and the scoring service's do not fit together (see above)"
}

main() {
  load_outputs
  check_route || exit 1
  local registered=""
  if [[ "$model_source" == azureml:* ]]; then
    [[ "$model_source" =~ ^azureml:[A-Za-z0-9][A-Za-z0-9_.-]*:[0-9]+$ ]] ||
      fail "--model ${model_source}: a registered model is azureml:NAME:VERSION"
    registered="$model_source"
  else
    [[ -f "${model_source}/MLmodel" ]] ||
      fail "no MLflow model in ${model_source} (train it: python -m scoring.train --out scoring/model)"
  fi
  local endpoint_file="${aml_dir}/endpoint.yml" deployment_file="${aml_dir}/deployment.yml"
  local file
  for file in "$endpoint_file" "$deployment_file" "${aml_dir}/environment.yml" "${aml_dir}/conda.yml"; do
    [[ -f "$file" ]] || fail "missing ${file#"${repo}/"}"
  done
  if ((!dry_run)); then
    command -v az >/dev/null || fail "the Azure CLI (az) is required"
    az extension show --name ml --output none 2>/dev/null || fail "the Azure ML CLI extension is missing: az extension add --name ml"
  fi

  local rg="$AZURE_RESOURCE_GROUP" ws="$AZURE_ML_WORKSPACE" endpoint="$AZURE_ML_ENDPOINT"
  local model_name deployment="$route" environment_name result_topic results_container suffix
  model_name="${route}-$(name_of aml.modelSuffix)"
  environment_name="$(name_of aml.environmentName)"
  result_topic="$(name_of serviceBus.resultTopic)"
  results_container="$(name_of containers.results)"
  suffix="$(printf '%s' "$route" | tr 'a-z-' 'A-Z_')"
  local ml=(--resource-group "$rg" --workspace-name "$ws")
  local work
  work="$(mktemp -d)"
  # shellcheck disable=SC2064 # expand now: the path is fixed
  trap "rm -rf '${work}'" EXIT

  if [[ -z "$(az_read probe "" ml workspace show --name "$ws" --resource-group "$rg" --query name --output tsv)" ]]; then
    log "creating workspace ${ws}"
    az_change ml workspace create --name "$ws" --resource-group "$rg" --location "$AZURE_LOCATION" --output none
  fi

  local model_ref model_dir="$model_source"
  if [[ -n "$registered" ]]; then
    model_ref="$registered"
    local registered_name="${registered#azureml:}"
    log "using the registered model ${registered_name}; reading its recorded requirements"
    az_change ml model download --name "${registered_name%%:*}" --version "${registered_name##*:}" \
      --download-path "${work}/model" "${ml[@]}" --output none
    model_dir=""
    if ((!dry_run)); then
      model_dir="$(dirname "$(find "${work}/model" -name MLmodel -print -quit)")"
      [[ -f "${model_dir}/MLmodel" ]] || fail "${registered} is not an MLflow model (no MLmodel file)"
    fi
  else
    local model_hash model_version count
    model_hash="$(content_hash "$model_source")"
    model_version="$(az_read probe "" ml model list --name "$model_name" "${ml[@]}" \
      --query "[?tags.content_sha256=='${model_hash}'].version | [0]" --output tsv)"
    if [[ -z "$model_version" ]]; then
      count="$(az_read probe "" ml model list --name "$model_name" "${ml[@]}" --query "length(@)" --output tsv)"
      model_version=$((${count:-0} + 1))
      log "registering model ${model_name}:${model_version} (content ${model_hash})"
      az_change ml model create --name "$model_name" --version "$model_version" --type mlflow_model \
        --path "$model_source" --tags "content_sha256=${model_hash}" "${ml[@]}" --output none
    else
      log "model ${model_name}:${model_version} already holds this content"
    fi
    model_ref="azureml:${model_name}:${model_version}"
  fi

  # The environment's version is the content hash of its definition (environment.yml and the merged conda
  # file beside it): a model with the same requirements reuses the registered environment.
  local environment_dir="${work}/environment"
  if [[ -n "$model_dir" ]]; then
    build_environment "$model_dir" "$environment_dir"
  else
    log "dry run: the registered model's requirements are not read; showing the service's environment"
    mkdir -p "$environment_dir"
    cp "${aml_dir}/environment.yml" "${aml_dir}/conda.yml" "$environment_dir/"
  fi
  local environment_file="${environment_dir}/environment.yml" environment_version
  environment_version="$(content_hash "$environment_file" "${environment_dir}/conda.yml")"
  if [[ -z "$(az_read probe "" ml environment show --name "$environment_name" --version "$environment_version" \
    "${ml[@]}" --query name --output tsv)" ]]; then
    log "registering environment ${environment_name}:${environment_version}"
    az_change ml environment create --file "$environment_file" --name "$environment_name" \
      --version "$environment_version" "${ml[@]}" --output none
  fi

  local endpoint_verb=update
  if [[ -z "$(az_read probe "" ml online-endpoint show --name "$endpoint" "${ml[@]}" --query name --output tsv)" ]]; then
    endpoint_verb=create
  fi
  log "${endpoint_verb} endpoint ${endpoint}"
  az_change ml online-endpoint "$endpoint_verb" --file "$endpoint_file" --name "$endpoint" "${ml[@]}" --output none

  # Roles before the deployment, so the first result can be published.
  local principal storage_id topic_id
  principal="$(az_read value "endpoint principal id" ml online-endpoint show --name "$endpoint" "${ml[@]}" \
    --query identity.principal_id --output tsv)"
  [[ -n "$principal" ]] || fail "endpoint ${endpoint} has no managed identity"
  topic_id="$(az_read value "result topic id" servicebus topic show --resource-group "$rg" \
    --namespace-name "$AZURE_SERVICEBUS_NAMESPACE" --name "$result_topic" --query id --output tsv)"
  storage_id="$(az_read value "storage account id" storage account show --resource-group "$rg" \
    --name "$AZURE_STORAGE_ACCOUNT_NAME" --query id --output tsv)"
  ensure_role "$principal" "Azure Service Bus Data Sender" "$topic_id"
  # OpenTelemetry from the scoring code to Application Insights (Entra auth: local auth is off on the resource).
  local telemetry=()
  if [[ -n "${AZURE_APPINSIGHTS_CONNECTION_STRING:-}" ]]; then
    local appinsights_id
    appinsights_id="$(az_read value "application insights id" resource show --resource-group "$rg" \
      --name "$AZURE_APPINSIGHTS_NAME" --resource-type Microsoft.Insights/components --query id --output tsv)"
    ensure_role "$principal" "Monitoring Metrics Publisher" "$appinsights_id"
    telemetry=("environment_variables.APPLICATIONINSIGHTS_CONNECTION_STRING=${AZURE_APPINSIGHTS_CONNECTION_STRING}"
      "environment_variables.APPLICATIONINSIGHTS_AUTHENTICATION_STRING=Authorization=AAD")
  fi
  ensure_role "$principal" "Storage Blob Data Contributor" \
    "${storage_id}/blobServices/default/containers/${results_container}"

  local deployment_verb=update
  if [[ -z "$(az_read probe "" ml online-deployment show --name "$deployment" --endpoint-name "$endpoint" "${ml[@]}" \
    --query name --output tsv)" ]]; then
    deployment_verb=create
  fi
  log "${deployment_verb} deployment ${deployment} (route ${route}, model ${model_ref})"
  az_change ml online-deployment "$deployment_verb" --file "$deployment_file" --name "$deployment" \
    --endpoint-name "$endpoint" "${ml[@]}" --output none --set \
    "model=${model_ref}" \
    "environment=azureml:${environment_name}:${environment_version}" \
    "environment_variables.RESULT_SERVICEBUS_NAMESPACE=${AZURE_SERVICEBUS_FQDN}" \
    "environment_variables.RESULT_TOPIC=${result_topic}" \
    "environment_variables.RESULTS_STORAGE_ACCOUNT_URL=${AZURE_STORAGE_BLOB_ENDPOINT}" \
    "environment_variables.INPUT_STORAGE_ACCOUNT_URLS=${AZURE_STORAGE_BLOB_ENDPOINT}" \
    "environment_variables.RESULTS_CONTAINER=${results_container}" \
    "environment_variables.SCORING_MODEL_NAME=${route}" "${telemetry[@]}"
  # The default route takes the endpoint's unpinned traffic; every route is reached by its pinned deployment.
  if [[ "$route" == "default" ]]; then
    az_change ml online-endpoint update --name "$endpoint" "${ml[@]}" --traffic "${deployment}=100" --output none
  fi

  local scoring_uri scoring_key uri_id key_id
  scoring_uri="$(az_read value "scoring uri" ml online-endpoint show --name "$endpoint" "${ml[@]}" \
    --query scoring_uri --output tsv)"
  scoring_key="$(az_read value "scoring key" ml online-endpoint get-credentials --name "$endpoint" "${ml[@]}" \
    --query primaryKey --output tsv)"
  [[ -n "$scoring_uri" && -n "$scoring_key" ]] || fail "endpoint ${endpoint} has no scoring URI or key"
  uri_id="$(set_secret "$(name_of keyVaultSecrets.scoringUri)" "$scoring_uri")"
  key_id="$(set_secret "$(name_of keyVaultSecrets.scoringKey)" "$scoring_key")"

  # Pointing the settings at the new secret versions is a configuration change, so the app re-reads them
  # now instead of within the day it takes a versionless reference to refresh.
  log "pointing ${AZURE_FUNCTION_APP_NAME} at the new scoring secrets"
  az_change functionapp config appsettings set --resource-group "$rg" --name "$AZURE_FUNCTION_APP_NAME" \
    --settings "SCORING_URI=@Microsoft.KeyVault(SecretUri=${uri_id})" \
    "SCORING_KEY=@Microsoft.KeyVault(SecretUri=${key_id})" "SCORING_DEPLOYMENT__${suffix}=${deployment}" --output none
  log "done: ${endpoint} serves route ${route} with ${model_ref} via deployment ${deployment}"
}

main
