// Role assignments, each at the narrowest scope that works:
// - function identity on the data account: Reader on input and results (reads, the writer copies staged
//   outputs), Contributor on output and ledger (writes), Delegator on the account (user-delegation SAS for
//   the scoring endpoint; the role is only assignable at account scope), Queue Data Contributor on the
//   blob trigger's poison queue only;
// - function identity on the host account: Blob Data Owner, Queue and Table Data Contributor (the Functions
//   host's documented needs for AzureWebJobsStorage with an identity; the account holds no data);
// - Service Bus: Sender on the request topic (publish, schedule retries), Receiver on the scoring, writer
//   and any extra model-route subscriptions;
// - Key Vault Secrets User, and Monitoring Metrics Publisher on Application Insights (Entra-only ingestion);
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
param poisonQueueName string
param serviceBusRoles object

@description('Subscriptions of the request topic that extra model routes (MODEL_ROUTES) receive from.')
param routeSubscriptions array

@description('Elastic Premium polls the account (LogsAndContainerScan), reading $logs as well as input.')
param blobTriggerScansAccount bool

var roleIds = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  blobDataReader: '2a2b9908-6ea1-4ae2-8e65-a410df84e7d1'
  blobDelegator: 'db58b8e5-c6ad-4a2a-8342-4190687cbf4a'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  serviceBusDataSender: '69a216fc-b8fb-44d8-bc22-1f3c2cd27a39'
  serviceBusDataReceiver: '4f6d3b9b-027b-4f4c-9142-0e5a2a2247e0'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

var functionContainerGrants = [
  {
    container: containers.input
    role: roleIds.blobDataReader
  }
  {
    container: containers.output
    role: roleIds.blobDataContributor
  }
  {
    container: containers.ledger
    role: roleIds.blobDataContributor
  }
  {
    container: containers.results
    role: roleIds.blobDataReader
  }
]

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

var hostAccountRoles = [
  roleIds.blobDataOwner
  roleIds.queueDataContributor
  roleIds.tableDataContributor
]

var withUser = !empty(userPrincipalId)
var userContainerGrants = withUser ? userContainerGrantsIfAny : []

resource dataAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: dataAccountName
}

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: hostAccountName
}

resource functionContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for grant in functionContainerGrants: {
    name: '${dataAccountName}/default/${grant.container}'
  }
]

resource userContainers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' existing = [
  for grant in userContainerGrants: {
    name: '${dataAccountName}/default/${grant.container}'
  }
]

resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' existing = {
  name: '${dataAccountName}/default/${poisonQueueName}'
}

resource requestTopic 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' existing = {
  name: '${serviceBusName}/${serviceBusRoles.requestTopic}'
}

resource scoringSubscription 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' existing = {
  name: '${serviceBusName}/${serviceBusRoles.requestTopic}/${serviceBusRoles.scoringSubscription}'
}

resource routeSubscriptionResources 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' existing = [
  for subscription in routeSubscriptions: {
    name: '${serviceBusName}/${serviceBusRoles.requestTopic}/${subscription}'
  }
]

resource writerSubscription 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' existing = {
  name: '${serviceBusName}/${serviceBusRoles.resultTopic}/${serviceBusRoles.writerSubscription}'
}

resource clientSubscription 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' existing = {
  name: '${serviceBusName}/${serviceBusRoles.resultTopic}/${serviceBusRoles.clientSubscription}'
}

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' existing = {
  name: keyVaultName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: appInsightsName
}

resource functionContainerRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (grant, i) in functionContainerGrants: {
    name: guid(functionContainers[i].id, functionPrincipalId, grant.role)
    scope: functionContainers[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', grant.role)
      principalId: functionPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource functionDelegator 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(dataAccount.id, functionPrincipalId, roleIds.blobDelegator)
  scope: dataAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.blobDelegator)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionAccountReader 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (blobTriggerScansAccount) {
  name: guid(dataAccount.id, functionPrincipalId, roleIds.blobDataReader)
  scope: dataAccount
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.blobDataReader)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionPoisonQueue 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(poisonQueue.id, functionPrincipalId, roleIds.queueDataContributor)
  scope: poisonQueue
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.queueDataContributor)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

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

resource functionScoringReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(scoringSubscription.id, functionPrincipalId, roleIds.serviceBusDataReceiver)
  scope: scoringSubscription
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataReceiver)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

resource functionRouteReceivers 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for (subscription, i) in routeSubscriptions: {
    name: guid(routeSubscriptionResources[i].id, functionPrincipalId, roleIds.serviceBusDataReceiver)
    scope: routeSubscriptionResources[i]
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataReceiver)
      principalId: functionPrincipalId
      principalType: 'ServicePrincipal'
    }
  }
]

resource functionWriterReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(writerSubscription.id, functionPrincipalId, roleIds.serviceBusDataReceiver)
  scope: writerSubscription
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.serviceBusDataReceiver)
    principalId: functionPrincipalId
    principalType: 'ServicePrincipal'
  }
}

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
