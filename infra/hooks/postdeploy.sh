#!/usr/bin/env bash
# After the function code is deployed: subscribe the blob trigger's Event Grid webhook
# (runtime/webhooks/blobs?functionName=Host.Functions.<blob trigger>&code=<blobs_extension key>) to
# BlobCreated events of the input container. Flex Consumption only; Elastic Premium polls the container.
# azd runs this as the postdeploy hook with its environment values exported; without azd, export
# AZURE_RESOURCE_GROUP, AZURE_FUNCTION_APP_NAME, AZURE_HOSTING_PLAN and AZURE_EVENTGRID_SYSTEM_TOPIC
# (the Bicep outputs) and run it yourself. Safe to re-run: the subscription is created or updated.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

fail() {
  echo "postdeploy: $*" >&2
  exit 1
}

# shellcheck source-path=SCRIPTDIR source=../names.sh
source "${here}/../names.sh"

if [[ "${AZURE_HOSTING_PLAN:-FlexConsumption}" != "FlexConsumption" ]]; then
  echo "postdeploy: hosting plan ${AZURE_HOSTING_PLAN}: the blob trigger polls; no Event Grid subscription needed."
  exit 0
fi

for var in AZURE_RESOURCE_GROUP AZURE_FUNCTION_APP_NAME AZURE_EVENTGRID_SYSTEM_TOPIC; do
  [[ -n "${!var:-}" ]] || fail "${var} is not set (it is an output of infra/main.bicep)"
done

command -v az >/dev/null || fail "the Azure CLI (az) is required"
command -v python3 >/dev/null || fail "python3 is required (it reads infra/names.json)"

function_name="$(name_of functions.blobTrigger)"
input_container="$(name_of containers.input)"
subscription_name="$(name_of eventGridSubscription)"

# The host creates the blobs_extension key when it first loads the blob trigger, shortly after deployment.
key=""
for attempt in $(seq 1 30); do
  key="$(az functionapp keys list --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" \
    --query "systemKeys.blobs_extension" --output tsv 2>/dev/null || true)"
  [[ -n "$key" ]] && break
  echo "postdeploy: waiting for the blobs_extension key (attempt ${attempt}/30)"
  sleep 10
done
[[ -n "$key" ]] || fail "no blobs_extension system key on ${AZURE_FUNCTION_APP_NAME}; is the code deployed and the host running?"

host_name="$(az functionapp show --resource-group "$AZURE_RESOURCE_GROUP" --name "$AZURE_FUNCTION_APP_NAME" \
  --query defaultHostName --output tsv)"
endpoint="https://${host_name}/runtime/webhooks/blobs?functionName=Host.Functions.${function_name}&code=${key}"

echo "postdeploy: subscribing ${function_name} to BlobCreated in container '${input_container}'"
az eventgrid system-topic event-subscription create \
  --resource-group "$AZURE_RESOURCE_GROUP" \
  --system-topic-name "$AZURE_EVENTGRID_SYSTEM_TOPIC" \
  --name "$subscription_name" \
  --endpoint-type webhook \
  --endpoint "$endpoint" \
  --included-event-types Microsoft.Storage.BlobCreated \
  --subject-begins-with "/blobServices/default/containers/${input_container}/blobs/" \
  --max-delivery-attempts 30 \
  --event-ttl 1440 \
  --output none
echo "postdeploy: Event Grid subscription '${subscription_name}' is in place."
