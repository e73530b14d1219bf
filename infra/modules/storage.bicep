// Two storage accounts. The data account holds the app's containers (input, output, ledger, results) and
// accepts only Entra identities (no shared keys; SAS URLs are user-delegation SAS). The host account holds
// what the Functions host needs (AzureWebJobsStorage, the Flex deployment container, the Elastic Premium
// content share): the host's broad roles apply there and never reach the data.
param dataAccountName string
param hostAccountName string
param location string
param tags object
param dataContainers array
param poisonQueueName string
param deploymentContainer string

@description('Container the scoring endpoint stages large outputs in; its blobs are deleted after stagedResultsRetentionDays.')
param resultsContainer string

@description('Days after which a staged output left in the results container is deleted (the writer deletes each one once its output is written).')
param stagedResultsRetentionDays int

@description('Azure Files share for Elastic Premium; empty on Flex Consumption.')
param contentShareName string

var commonProperties = {
  minimumTlsVersion: 'TLS1_2'
  supportsHttpsTrafficOnly: true
  allowBlobPublicAccess: false
  defaultToOAuthAuthentication: true
}

resource dataAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: dataAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  properties: union(commonProperties, {
    allowSharedKeyAccess: false
  })
}

resource dataBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: dataAccount
  name: 'default'
}

resource containers 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for container in dataContainers: {
    parent: dataBlobs
    name: container
    properties: {
      publicAccess: 'None'
    }
  }
]

// The writer deletes each staged output once the final output is written; this rule removes what is left
// behind (results whose message was dead-lettered or expired, a delete that failed).
resource dataLifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: dataAccount
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          enabled: true
          name: 'delete-staged-results'
          type: 'Lifecycle'
          definition: {
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: stagedResultsRetentionDays
                }
              }
            }
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${resultsContainer}/'
              ]
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    containers
  ]
}

resource dataQueues 'Microsoft.Storage/storageAccounts/queueServices@2023-05-01' = {
  parent: dataAccount
  name: 'default'
}

// The blob trigger writes poison messages to this queue on the trigger's own account. Creating it here lets
// the identity's queue role be scoped to the one queue.
resource poisonQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2023-05-01' = {
  parent: dataQueues
  name: poisonQueueName
}

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: hostAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_LRS'
  }
  // Azure Files (Elastic Premium content share) still needs a key; Flex needs none.
  properties: union(commonProperties, {
    allowSharedKeyAccess: !empty(contentShareName)
  })
}

resource hostBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: hostAccount
  name: 'default'
}

resource packageContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobs
  name: deploymentContainer
  properties: {
    publicAccess: 'None'
  }
}

resource hostFiles 'Microsoft.Storage/storageAccounts/fileServices@2023-05-01' = if (!empty(contentShareName)) {
  parent: hostAccount
  name: 'default'
}

resource contentShare 'Microsoft.Storage/storageAccounts/fileServices/shares@2023-05-01' = if (!empty(contentShareName)) {
  parent: hostFiles
  name: contentShareName
}

output dataAccountName string = dataAccount.name
output dataAccountId string = dataAccount.id
output dataBlobEndpoint string = dataAccount.properties.primaryEndpoints.blob
output dataQueueEndpoint string = dataAccount.properties.primaryEndpoints.queue
output hostAccountName string = hostAccount.name
output hostBlobEndpoint string = hostAccount.properties.primaryEndpoints.blob
output hostQueueEndpoint string = hostAccount.properties.primaryEndpoints.queue
output hostTableEndpoint string = hostAccount.properties.primaryEndpoints.table
output containerNames array = [for (name, i) in dataContainers: containers[i].name]
