// Azure resources for the asynchronous inference app: one resource group holding storage, Service Bus,
// Key Vault, monitoring, a user-assigned identity with least-privilege roles, and the function app on
// Flex Consumption (default) or Elastic Premium. The Azure ML endpoint is deployed by deploy_aml.sh.
// Names shared with the code live in names.json and servicebus-entities.json, loaded at compile time.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('Environment name (azd sets it); resource names derive from it.')
param environmentName string

@minLength(1)
@description('Region for all resources.')
param location string

@description('Object id of the person deploying (azd sets AZURE_PRINCIPAL_ID). Gets Key Vault Secrets Officer (deploy_aml.sh writes the scoring secrets) and the client CLI roles. Empty to skip.')
param principalId string = ''

@allowed([
  'User'
  'ServicePrincipal'
])
@description('Kind of principalId: a person (User) or a CI service principal.')
param principalType string = 'User'

@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
@description('Hosting plan of the function app. Flex uses the Event Grid blob trigger; Elastic Premium polls (LogsAndContainerScan).')
param hostingPlan string = 'FlexConsumption'

@description('Largest accepted input blob in bytes (MAX_INPUT_BYTES). A string: 2 GiB is past the 32-bit range some tools still assume for template integers; the app validates it at start.')
param maxInputBytes string = '2147483648'

@description('Lifetime of the read-only SAS given to the scoring endpoint (SAS_TTL_MINUTES).')
param sasTtlMinutes int = 60

@description('Minutes to wait for a result before a request is resubmitted or failed (RESULT_DEADLINE_MINUTES).')
param resultDeadlineMinutes int = 60

@description('How often a request without a result is resubmitted before it is failed (MAX_RESUBMITS).')
param maxResubmits int = 2

@description('NCRONTAB schedule of the reconcile timer that resubmits or fails overdue requests (RECONCILE_SCHEDULE).')
param reconcileSchedule string = '0 */5 * * * *'

@minValue(2)
@description('Days after which a staged output left in the results container is deleted by the lifecycle policy. Longer than the result topic\'s message time to live (one day), so an output is never removed before its result can be written.')
param stagedResultsRetentionDays int = 7

@allowed([
  2048
  4096
])
@description('Flex Consumption instance memory.')
param instanceMemoryMB int = 2048

@description('Flex Consumption scale-out limit (40 is the lowest value all versions of the Flex documentation accept). With host.json maxConcurrentCalls it bounds the requests score_request sends the endpoint at once (2 x 40 = 80); shared/limits.py checks that against scoring/aml/deployment.yml.')
param maximumInstanceCount int = 40

var names = loadJsonContent('names.json')
// The model routes (../models.json, shipped with the function app too): each has a score_request function,
// a subscription (modules/servicebus.bicep) the identity receives on, and an Azure ML deployment of its name.
var modelRoutes = loadJsonContent('../models.json').routes
var token = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var isFlex = hostingPlan == 'FlexConsumption'

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: 'rg-${environmentName}'
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-func-${token}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${token}'
    appInsightsName: 'appi-${token}'
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    dataAccountName: 'st${token}'
    hostAccountName: 'sthost${token}'
    location: location
    tags: tags
    dataContainers: [
      names.containers.input
      names.containers.output
      names.containers.ledger
      names.containers.results
    ]
    poisonQueueName: names.blobTriggerPoisonQueue
    resultsContainer: names.containers.results
    stagedResultsRetentionDays: stagedResultsRetentionDays
    deploymentContainer: names.containers.deployment
    contentShareName: isFlex ? '' : 'func-${token}'
  }
}

module serviceBus 'modules/servicebus.bicep' = {
  name: 'servicebus'
  scope: rg
  params: {
    name: 'sb-${token}'
    location: location
    tags: tags
    modelRoutes: modelRoutes
    requestTopic: names.serviceBus.requestTopic
    routeSubscriptionProperties: names.serviceBus.routeSubscriptionProperties
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  scope: rg
  params: {
    name: 'kv-${token}'
    location: location
    tags: tags
    contentShareAccountName: isFlex ? '' : storage.outputs.hostAccountName
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    functionPrincipalId: identity.outputs.principalId
    userPrincipalId: principalId
    userPrincipalType: principalType
    dataAccountName: storage.outputs.dataAccountName
    hostAccountName: storage.outputs.hostAccountName
    serviceBusName: serviceBus.outputs.name
    keyVaultName: keyVault.outputs.name
    appInsightsName: monitoring.outputs.appInsightsName
    containers: names.containers
    serviceBusRoles: names.serviceBus
    routeSubscriptions: map(filter(modelRoutes, route => route.subscription != names.serviceBus.scoringSubscription), route => route.subscription)
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  scope: rg
  // Roles first: the host starts as soon as the site exists and needs its storage and Key Vault access.
  dependsOn: [
    rbac
  ]
  params: {
    name: 'func-${token}'
    planName: 'plan-${token}'
    location: location
    tags: tags
    azdServiceName: names.azdServiceName
    hostingPlan: hostingPlan
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    dataBlobEndpoint: storage.outputs.dataBlobEndpoint
    dataQueueEndpoint: storage.outputs.dataQueueEndpoint
    hostBlobEndpoint: storage.outputs.hostBlobEndpoint
    hostQueueEndpoint: storage.outputs.hostQueueEndpoint
    hostTableEndpoint: storage.outputs.hostTableEndpoint
    deploymentContainer: names.containers.deployment
    contentShareName: isFlex ? '' : 'func-${token}'
    contentShareSecretUri: keyVault.outputs.contentShareSecretUri
    serviceBusFqdn: serviceBus.outputs.fqdn
    keyVaultUri: keyVault.outputs.uri
    scoringUriSecretName: names.keyVaultSecrets.scoringUri
    scoringKeySecretName: names.keyVaultSecrets.scoringKey
    appInsightsConnectionString: monitoring.outputs.connectionString
    containers: names.containers
    serviceBusRoles: names.serviceBus
    maxInputBytes: maxInputBytes
    sasTtlMinutes: sasTtlMinutes
    resultDeadlineMinutes: resultDeadlineMinutes
    maxResubmits: maxResubmits
    reconcileSchedule: reconcileSchedule
    modelRoutes: modelRoutes
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
  }
}

// Flex Consumption only runs the Event Grid blob trigger. The topic exists here; its subscription needs the
// blobs_extension system key, which exists only once the code runs, so hooks/postdeploy.sh creates it.
module eventGrid 'modules/eventgrid.bicep' = if (isFlex) {
  name: 'eventgrid'
  scope: rg
  params: {
    name: 'evgt-${token}'
    location: location
    tags: tags
    storageAccountName: storage.outputs.dataAccountName
  }
}

// Outputs become azd environment values; hooks/postdeploy.sh and deploy_aml.sh read them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_HOSTING_PLAN string = hostingPlan
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.dataAccountName
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.dataBlobEndpoint
output AZURE_SERVICEBUS_NAMESPACE string = serviceBus.outputs.name
output AZURE_SERVICEBUS_FQDN string = serviceBus.outputs.fqdn
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name
output AZURE_APPINSIGHTS_NAME string = monitoring.outputs.appInsightsName
output AZURE_APPINSIGHTS_CONNECTION_STRING string = monitoring.outputs.connectionString
output AZURE_EVENTGRID_SYSTEM_TOPIC string = isFlex ? 'evgt-${token}' : ''
output AZURE_ML_WORKSPACE string = '${names.aml.workspacePrefix}-${token}'
output AZURE_ML_ENDPOINT string = '${names.aml.endpointPrefix}-${token}'
