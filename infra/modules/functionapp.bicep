// The function app (Python 3.11, Linux) on Flex Consumption or Elastic Premium, running as the
// user-assigned identity. Every connection is identity-based; the only secrets (scoring URI and key, and
// the Elastic Premium content share) are Key Vault references, never values.
param name string
param planName string
param location string
param tags object
param azdServiceName string

@allowed([
  'FlexConsumption'
  'ElasticPremium'
])
param hostingPlan string
param identityId string
param identityClientId string
param dataBlobEndpoint string
param dataQueueEndpoint string
param hostBlobEndpoint string
param hostQueueEndpoint string
param hostTableEndpoint string
param deploymentContainer string
param contentShareName string
param contentShareSecretUri string
param serviceBusFqdn string
param keyVaultUri string
param scoringUriSecretName string
param scoringKeySecretName string
param appInsightsConnectionString string
param containers object
param serviceBusRoles object
param maxInputBytes string
param sasTtlMinutes int
param resultDeadlineMinutes int
param maxResubmits int
param reconcileSchedule string
@description('The model routes of ../models.json: each is pinned to the Azure ML deployment of its name.')
param modelRoutes array
param instanceMemoryMB int
param maximumInstanceCount int

var isFlex = hostingPlan == 'FlexConsumption'

// Settings the app's code reads (shared/settings.py) plus the identity-based connections its bindings use.
// Names must match local.settings.json.example; tests/unit/infra checks both against the code.
var appSettings = {
  AzureWebJobsStorage__blobServiceUri: hostBlobEndpoint
  AzureWebJobsStorage__queueServiceUri: hostQueueEndpoint
  AzureWebJobsStorage__tableServiceUri: hostTableEndpoint
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  DataStorage__blobServiceUri: dataBlobEndpoint
  // The blob trigger needs a queue service for poison messages whenever blobServiceUri is used.
  DataStorage__queueServiceUri: dataQueueEndpoint
  DataStorage__credential: 'managedidentity'
  DataStorage__clientId: identityClientId
  ServiceBus__fullyQualifiedNamespace: serviceBusFqdn
  ServiceBus__credential: 'managedidentity'
  ServiceBus__clientId: identityClientId
  // DefaultAzureCredential in the app's own SDK clients picks the user-assigned identity from this.
  AZURE_CLIENT_ID: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
  // host.json "telemetryMode": "OpenTelemetry": the Python worker sends its own OpenTelemetry (Azure Monitor distro).
  PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: 'true'
  INPUT_CONTAINER: containers.input
  OUTPUT_CONTAINER: containers.output
  LEDGER_CONTAINER: containers.ledger
  RESULTS_CONTAINER: containers.results
  REQUEST_TOPIC: serviceBusRoles.requestTopic
  RESULT_TOPIC: serviceBusRoles.resultTopic
  WRITER_SUBSCRIPTION: serviceBusRoles.writerSubscription
  // Versionless references: the latest secret written by deploy_aml.sh is used.
  SCORING_URI: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${scoringUriSecretName}/)'
  SCORING_KEY: '@Microsoft.KeyVault(SecretUri=${keyVaultUri}secrets/${scoringKeySecretName}/)'
  MAX_INPUT_BYTES: maxInputBytes
  SAS_TTL_MINUTES: string(sasTtlMinutes)
  RESULT_DEADLINE_MINUTES: string(resultDeadlineMinutes)
  MAX_RESUBMITS: string(maxResubmits)
  RECONCILE_SCHEDULE: reconcileSchedule
  // Azure Storage does not lose an acknowledged write: a success's output is not checked again a deadline later
  // (the local stack checks it, as Azurite forgets its last seconds of writes on kill -9; docs/deploy.md).
  RECONCILE_CHECK_OUTPUTS: 'false'
  BLOB_TRIGGER_SOURCE: isFlex ? 'EventGrid' : 'LogsAndContainerScan'
}

// Flex takes runtime and version from functionAppConfig and rejects the classic settings, so only
// Elastic Premium gets them, plus its Azure Files content share and a remote (Oryx) build on deploy.
var premiumSettings = {
  FUNCTIONS_EXTENSION_VERSION: '~4'
  FUNCTIONS_WORKER_RUNTIME: 'python'
  WEBSITE_CONTENTAZUREFILECONNECTIONSTRING: '@Microsoft.KeyVault(SecretUri=${contentShareSecretUri})'
  WEBSITE_CONTENTSHARE: contentShareName
  // The platform cannot validate a share behind a Key Vault reference; the share is created in storage.bicep.
  WEBSITE_SKIP_CONTENTSHARE_VALIDATION: '1'
  SCM_DO_BUILD_DURING_DEPLOYMENT: 'true'
  ENABLE_ORYX_BUILD: 'true'
}

// SCORING_DEPLOYMENT__<ROUTE> for every route: each route's requests go to the deployment of its name (the
// azureml-model-deployment header), never to whatever the endpoint's traffic split picks.
var routeDeployments = toObject(modelRoutes, route => concat('SCORING_DEPLOYMENT__', toUpper(replace(route.model, '-', '_'))), route => route.model)

var allSettings = union(appSettings, routeDeployments, isFlex ? {} : premiumSettings)

var flexSku = {
  name: 'FC1'
  tier: 'FlexConsumption'
}

var premiumSku = {
  name: 'EP1'
  tier: 'ElasticPremium'
}

// Flex Consumption: the package lives in a host-account container, read with the identity.
var flexConfig = {
  deployment: {
    storage: {
      type: 'blobContainer'
      value: '${hostBlobEndpoint}${deploymentContainer}'
      authentication: {
        type: 'UserAssignedIdentity'
        userAssignedIdentityResourceId: identityId
      }
    }
  }
  scaleAndConcurrency: {
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
  }
  runtime: {
    name: 'python'
    version: '3.11'
  }
}

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: isFlex ? 'functionapp' : 'elastic'
  sku: isFlex ? flexSku : premiumSku
  properties: {
    reserved: true
    maximumElasticWorkerCount: isFlex ? null : 20
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd finds the deploy target of service 'api' by this tag.
  tags: union(tags, {
    'azd-service-name': azdServiceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    keyVaultReferenceIdentity: identityId
    functionAppConfig: isFlex ? flexConfig : null
    siteConfig: {
      linuxFxVersion: isFlex ? null : 'Python|3.11'
      minTlsVersion: '1.2'
      ftpsState: 'Disabled'
      appSettings: [
        for setting in items(allSettings): {
          name: setting.key
          value: setting.value
        }
      ]
    }
  }
}

output name string = site.name
output defaultHostName string = site.properties.defaultHostName
output settingNames array = [for setting in items(allSettings): setting.key]
