// Role assignments, as Microsoft documents them for each trigger and binding the app uses (the table and
// its sources are in docs/deploy.md, "Roles"; tests/unit/infra/test_roles.py checks this file against it):
// - function identity on the data account (connection DataStorage: the blob trigger on both plans, the
//   app's blob clients): Storage Blob Data Owner and Storage Queue Data Contributor (the blob trigger's
//   documented pair; the queue role covers its poison queue). Owner includes what the app itself needs:
//   reading input, writing output and ledger, reading and deleting staged results, user-delegation SAS;
// - function identity on the host account (AzureWebJobsStorage): Storage Blob Data Owner, Storage Queue Data
//   Contributor, Storage Account Contributor (host storage with a blob trigger) and Storage Table Data
//   Contributor (diagnostic events); the account holds no data;
// - Service Bus: Data Sender on the request topic (publish, scheduled retries); Data Receiver and Data Owner
//   on every subscription a trigger reads (the scale controller reads the subscription's runtime properties);
// - Key Vault Secrets User (Key Vault references), Monitoring Metrics Publisher (Entra-only telemetry);
// - the deploying person (optional): Key Vault Secrets Officer (deploy_aml.sh writes the scoring secrets)
//   and what the client CLI needs: upload to input, read output, receive on the client subscription.
param functionPrincipalId string
param userPrincipalId string
param userPrincipalType string
param dataAccountName string
param hostAccountName string
param serviceBusName string
param keyVaultName string
param appInsightsName string
param containers object
param serviceBusRoles object

@description('Subscriptions of the request topic that the model routes of models.json other than the default receive from.')
param routeSubscriptions array

var roleIds = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  blobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageAccountContributor: '17d1049b-9a84-46fb-8f53-869881c3d3ab'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  serviceBusDataOwner: '090c5cfd-751d-490a-894a-3ce6f1109419'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var dataAccountRoles = [
  roleIds.blobDataOwner
  roleIds.queueDataContributor
]

var hostAccountRoles = [
  roleIds.blobDataOwner
  roleIds.queueDataContributor
  roleIds.storageAccountContributor
  roleIds.tableDataContributor
]

// Every subscription a Service Bus trigger of the app reads, as topic/subscription paths.
var triggeredSubscriptions = concat(
  [
    '${serviceBusRoles.requestTopic}/${serviceBusRoles.scoringSubscription}'
    '${serviceBusRoles.resultTopic}/${serviceBusRoles.writerSubscription}'
  ],
  map(routeSubscriptions, subscription => '${serviceBusRoles.requestTopic}/${subscription}')
)

var subscriptionTriggerRoles = [
  roleIds.serviceBusDataReceiver
  roleIds.serviceBusDataOwner
]

// One grant per (subscription, role): a loop's scope must be one resource per iteration.
var subscriptionGrants = flatten(map(triggeredSubscriptions, path => map(subscriptionTriggerRoles, role => {
  path: path
  role: role
})))

var userContainerGrantsIfAny = [
  {
    container: containers.input
    role: roleIds.blobDataContributor
  }
  {
    container: containers.output
    role: roleIds.blobDataReader
  }
]

var withUser = !empty(userPrincipalId)
var userContainerGrants = withUser ? userContainerGrantsIfAny : []

resource dataAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataAccountName
}

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostAccountName
}

resource userContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for grant in userContainerGrants: {
    name: '${dataAccountName}/default/${grant.container}'
  }
]

resource requestTopic 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' existing = {
  name: '${serviceBusName}/${serviceBusRoles.requestTopic}'
}

resource grantedSubscriptions 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' existing = [
  for grant in subscriptionGrants: {
    name: '${serviceBusName}/${grant.path}'
  }
]

resource clientSubscription 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' existing = {
  name: '${serviceBusName}/${serviceBusRoles.resultTopic}/${serviceBusRoles.clientSubscription}'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource functionDataRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in dataAccountRoles: {
    name: guid(dataAccount.id, functionPrincipalId, role)
    scope: dataAccount
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: functionPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource functionHostRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in hostAccountRoles: {
    name: guid(hostAccount.id, functionPrincipalId, role)
    scope: hostAccount
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: functionPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource functionRequestSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(requestTopic.id, functionPrincipalId, roleIds.serviceBusDataSender)
  scope: requestTopic
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataSender)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionSubscriptionRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (grant, i) in subscriptionGrants: {
    name: guid(grantedSubscriptions[i].id, functionPrincipalId, grant.role)
    scope: grantedSubscriptions[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', grant.role)
      principalId: functionPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource functionSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(vault.id, functionPrincipalId, roleIds.keyVaultSecretsUser)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, functionPrincipalId, roleIds.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource userSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(vault.id, userPrincipalId, roleIds.keyVaultSecretsOfficer)
  scope: vault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsOfficer)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}

resource userContainerRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (grant, i) in userContainerGrants: {
    name: guid(userContainers[i].id, userPrincipalId, grant.role)
    scope: userContainers[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', grant.role)
      principalId: userPrincipalId
      principalType: userPrincipalType
    }
  }
]

resource userClientReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (withUser) {
  name: guid(clientSubscription.id, userPrincipalId, roleIds.serviceBusDataReceiver)
  scope: clientSubscription
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataReceiver)
    principalId: userPrincipalId
    principalType: userPrincipalType
  }
}
