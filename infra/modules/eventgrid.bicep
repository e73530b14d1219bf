// Event Grid system topic on the data account. Its webhook subscription to the function's blob extension
// (runtime/webhooks/blobs?functionName=Host.Functions.<name>&code=<blobs_extension key>) is created after
// the code is deployed, by hooks/postdeploy.sh, because the key does not exist before the host runs.
param name string
param location string
param tags object
param storageAccountName string

resource dataAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

resource systemTopic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: name
  location: location
  tags: tags
  properties: {
    source: dataAccount.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

output name string = systemTopic.name
output id string = systemTopic.id
