"""A Docker-free Azure Service Bus emulator for local runs and tests, spoken to by the unmodified SDK.

Run it with `python -m devstack.servicebus --config infra/servicebus-entities.json --port 5673 --data DIR`
and point `azure-servicebus` (sync or `azure.servicebus.aio`) at
`Endpoint=sb://127.0.0.1:5673;SharedAccessKeyName=...;SharedAccessKey=...;UseDevelopmentEmulator=true`.

Why python-qpid-proton: proton already implements AMQP 1.0 framing, the SASL exchange, session and link
state and flow control, and it was shown to interoperate with the SDK's own pure-Python AMQP stack (sync
and aio) on every step that matters. The alternative, an asyncio server built on the SDK's private
`_pyamqp` codec, would have to re-implement all of that on top of undocumented modules. Proton's quirks
are worked around here: the transfer's message-format is invisible (batches are recognised by shape),
binary delivery tags and memoryview values are handled explicitly, the header is written by hand so a
zero delivery-count reaches the SDK, and every handler is guarded so that no exception ends the loop.
The engine is driven by a small `selectors` loop (`ioloop.py`) rather than proton's Python `Container`
reactor: same engine and events, but the reactor's generic dispatch and selectable bookkeeping cost about
as much CPU per settled message as everything else together. Single-threaded: the broker state lives in
memory and SQLite (WAL) is the durable log.

Supported: SASL ANONYMOUS + CBS put-token with SAS tokens signed by the configured key; queues, topics
with subscriptions (correlation and SQL filters, SQL actions), ForwardTo; send single and batch;
scheduled messages and cancellation; peek-lock (complete, abandon, defer, dead-letter, renew lock) and
receive-and-delete; prefetch; lock expiry and MaxDeliveryCount dead-lettering; TTL expiry (dead-lettered
when DeadLetteringOnMessageExpiration); `$DeadLetterQueue` sub-queues; peek; deferred messages by
sequence number; duplicate detection by message id; sessions (named and next-available, one receiver
per session, ordered, session lock renewal, session state, listing sessions); `$management`
update-disposition; `AutoLockRenewer` (its threads' out-of-order transfers are renumbered, `framing.py`);
the HTTPS management API of `ServiceBusAdministrationClient` on the same port (`https.py`, `admin.py`,
`atom.py`), with a certificate from a local CA kept in the data dir (`tls.py`, `<data>/ca.pem`).
Durability: a send is acknowledged and a settlement answered only after its SQLite commit (WAL,
synchronous=NORMAL by default, which survives a process crash; `--sync FULL` also survives power loss).

Not supported: AMQP over TLS (use `UseDevelopmentEmulator=true`), Entra ID/JWT tokens, transactions, rule
management over AMQP (add/remove/enumerate rules; the HTTP API does it), auto-delete on idle, partitioned
entities, `$Transfer` dead-letter queues, ForwardDeadLetteredMessagesTo, message size quotas per entity, and
any per-entity throttling. A batch is recognised by its shape (every body section
is an embedded AMQP message), so a single message whose body is itself an encoded AMQP message would be
split.
"""
