// Key Vault (Azure RBAC authorisation) for the secrets app settings reference with
// @Microsoft.KeyVault(SecretUri=...): the scoring endpoint's URI and key (written by deploy_aml.sh) and,
// on Elastic Premium only, the content share connection string (Azure Files has no identity access).
param name string
param location string
param tags object

@description('Host storage account whose key becomes the content share secret; empty on Flex Consumption.')
param contentShareAccountName string

var contentShareSecretName = 'content-share-connection'

resource vault 'Microsoft.KeyVault/vaults@2023-07-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: tenant().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: 7
  }
}

resource hostAccount 'Microsoft.Storage/storageAccounts@2023-05-01' existing = if (!empty(contentShareAccountName)) {
  name: contentShareAccountName
}

resource contentShareSecret 'Microsoft.KeyVault/vaults/secrets@2023-07-01' = if (!empty(contentShareAccountName)) {
  parent: vault
  name: contentShareSecretName
  properties: {
    value: 'DefaultEndpointsProtocol=https;AccountName=${contentShareAccountName};AccountKey=${hostAccount.listKeys().keys[0].value};EndpointSuffix=${environment().suffixes.storage}'
  }
}

output name string = vault.name
output id string = vault.id
output uri string = vault.properties.vaultUri
output contentShareSecretUri string = empty(contentShareAccountName) ? '' : '${vault.properties.vaultUri}secrets/${contentShareSecretName}/'
