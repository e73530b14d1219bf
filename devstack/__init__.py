"""The local stack: Service Bus emulator, local functions host and the up/down/status runner."""
