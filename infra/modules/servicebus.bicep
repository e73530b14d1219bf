// Service Bus namespace (Standard) whose queues, topics, subscriptions and rules are generated from
// servicebus-entities.json, the same file the local emulator loads: one definition for both. The request
// topic's subscriptions follow from the model routes (models.json, passed by main.bicep): one per route, with
// the properties of names.json serviceBus.routeSubscriptionProperties and a correlation rule on the 'model'
// application property (the local stack writes the same into the emulator's config, devstack/routes.py).
// ISO 8601 durations (P1D, PT10M, PT1M) pass through unchanged; ARM takes the same format.
// Filter types compare in any letter case (=~), as the emulator reads them.
param name string
param location string
param tags object
@description('The model routes of models.json: model name and subscription of the request topic.')
param modelRoutes array
@description('The topic the routes subscribe to (names.json serviceBus.requestTopic).')
param requestTopic string
@description('Properties of every route subscription (names.json serviceBus.routeSubscriptionProperties).')
param routeSubscriptionProperties object

// any(): the file's inferred type would make Bicep reject optional properties that one entity has and
// another lacks; the template reads them with .? instead.
var config = any(loadJsonContent('../servicebus-entities.json'))
var queues = config.UserConfig.Namespaces[0].?Queues ?? []
var topics = config.UserConfig.Namespaces[0].Topics
var routeSubscriptions = map(modelRoutes, route => {
  topic: requestTopic
  name: route.subscription
  properties: routeSubscriptionProperties
  rules: [
    {
      Name: 'model-${route.model}'
      Properties: {
        FilterType: 'Correlation'
        CorrelationFilter: {
          Properties: {
            model: route.model
          }
        }
      }
    }
  ]
})
var subscriptions = concat(flatten(map(topics, t => map(t.?Subscriptions ?? [], s => {
  topic: t.Name
  name: s.Name
  properties: s.?Properties ?? {}
  rules: s.?Rules ?? []
}))), routeSubscriptions)
var rules = flatten(map(subscriptions, s => map(s.rules, r => {
  topic: s.topic
  subscription: s.name
  name: r.Name
  properties: r.Properties
  // The emulator reads an empty action expression as no action.
  action: r.Properties.?Action.?SqlExpression ?? ''
})))
// A subscription created through ARM gets a '$Default' rule that accepts everything. Where the config
// lists rules, that catch-all would defeat them, so it is replaced by a rule that matches nothing.
var filteredSubscriptions = filter(subscriptions, s => (length(s.rules) > 0) && !contains(map(s.rules, r => r.Name), '$Default'))

resource namespace 'Microsoft.ServiceBus/namespaces@2022-10-01-preview' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
  }
  properties: {
    // Entra identities only: no SAS keys to leak or rotate.
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
  }
}

resource queueResources 'Microsoft.ServiceBus/namespaces/queues@2022-10-01-preview' = [
  for queue in queues: {
    parent: namespace
    name: queue.Name
    properties: {
      lockDuration: queue.?Properties.?LockDuration
      maxDeliveryCount: queue.?Properties.?MaxDeliveryCount
      requiresSession: queue.?Properties.?RequiresSession
      defaultMessageTimeToLive: queue.?Properties.?DefaultMessageTimeToLive
      deadLetteringOnMessageExpiration: queue.?Properties.?DeadLetteringOnMessageExpiration
      requiresDuplicateDetection: queue.?Properties.?RequiresDuplicateDetection
      duplicateDetectionHistoryTimeWindow: queue.?Properties.?DuplicateDetectionHistoryTimeWindow
      // The emulator reads an empty forwarding target as none.
      forwardTo: empty(queue.?Properties.?ForwardTo ?? '') ? null : queue.Properties.ForwardTo
      forwardDeadLetteredMessagesTo: empty(queue.?Properties.?ForwardDeadLetteredMessagesTo ?? '') ? null : queue.Properties.ForwardDeadLetteredMessagesTo
    }
  }
]

resource topicResources 'Microsoft.ServiceBus/namespaces/topics@2022-10-01-preview' = [
  for topic in topics: {
    parent: namespace
    name: topic.Name
    properties: {
      defaultMessageTimeToLive: topic.?Properties.?DefaultMessageTimeToLive
      // Not partitioned: the scoring service sends a job's results in one batch, which a partitioned topic with
      // duplicate detection refuses (its messages have different message ids).
      enablePartitioning: false
      requiresDuplicateDetection: topic.?Properties.?RequiresDuplicateDetection
      duplicateDetectionHistoryTimeWindow: topic.?Properties.?DuplicateDetectionHistoryTimeWindow
    }
  }
]

resource subscriptionResources 'Microsoft.ServiceBus/namespaces/topics/subscriptions@2022-10-01-preview' = [
  for sub in subscriptions: {
    name: '${namespace.name}/${sub.topic}/${sub.name}'
    properties: {
      requiresSession: sub.properties.?RequiresSession
      lockDuration: sub.properties.?LockDuration
      maxDeliveryCount: sub.properties.?MaxDeliveryCount
      defaultMessageTimeToLive: sub.properties.?DefaultMessageTimeToLive
      deadLetteringOnMessageExpiration: sub.properties.?DeadLetteringOnMessageExpiration
      forwardTo: empty(sub.properties.?ForwardTo ?? '') ? null : sub.properties.ForwardTo
      forwardDeadLetteredMessagesTo: empty(sub.properties.?ForwardDeadLetteredMessagesTo ?? '') ? null : sub.properties.ForwardDeadLetteredMessagesTo
    }
    // Forwarding targets must exist first.
    dependsOn: [
      topicResources
      queueResources
    ]
  }
]

// Service Bus answers 409 when one subscription's rules change concurrently, and ARM runs loop iterations
// and independent resources in parallel. So rule changes run one at a time (@batchSize(1)), in one chain:
// the listed Sql rules, then the Correlation rules, then the '$Default' overrides. Replacing '$Default'
// last means a subscription never matches nothing while its rules are being created.
@batchSize(1)
resource sqlRules 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2022-10-01-preview' = [
  for rule in filter(rules, r => r.properties.FilterType =~ 'Sql'): {
    name: '${namespace.name}/${rule.topic}/${rule.subscription}/${rule.name}'
    properties: {
      filterType: 'SqlFilter'
      sqlFilter: {
        sqlExpression: rule.properties.SqlFilter.SqlExpression
      }
      action: empty(rule.action) ? null : { sqlExpression: rule.action }
    }
    dependsOn: [
      subscriptionResources
    ]
  }
]

@batchSize(1)
resource correlationRules 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2022-10-01-preview' = [
  for rule in filter(rules, r => r.properties.FilterType =~ 'Correlation'): {
    name: '${namespace.name}/${rule.topic}/${rule.subscription}/${rule.name}'
    properties: {
      filterType: 'CorrelationFilter'
      correlationFilter: {
        properties: rule.properties.CorrelationFilter.?Properties
        correlationId: rule.properties.CorrelationFilter.?CorrelationId
        contentType: rule.properties.CorrelationFilter.?ContentType
        label: rule.properties.CorrelationFilter.?Label
        messageId: rule.properties.CorrelationFilter.?MessageId
        replyTo: rule.properties.CorrelationFilter.?ReplyTo
        replyToSessionId: rule.properties.CorrelationFilter.?ReplyToSessionId
        sessionId: rule.properties.CorrelationFilter.?SessionId
        to: rule.properties.CorrelationFilter.?To
      }
      action: empty(rule.action) ? null : { sqlExpression: rule.action }
    }
    dependsOn: [
      subscriptionResources
      sqlRules
    ]
  }
]

@batchSize(1)
resource defaultRuleOverrides 'Microsoft.ServiceBus/namespaces/topics/subscriptions/rules@2022-10-01-preview' = [
  for sub in filteredSubscriptions: {
    name: '${namespace.name}/${sub.topic}/${sub.name}/$Default'
    properties: {
      filterType: 'SqlFilter'
      sqlFilter: {
        sqlExpression: '1=0'
      }
    }
    dependsOn: [
      subscriptionResources
      sqlRules
      correlationRules
    ]
  }
]

output name string = namespace.name
output id string = namespace.id
// e.g. sb-abc.servicebus.windows.net, the value of ServiceBus__fullyQualifiedNamespace.
output fqdn string = split(split(namespace.properties.serviceBusEndpoint, '/')[2], ':')[0]
output topicNames array = [for topic in topics: topic.Name]
