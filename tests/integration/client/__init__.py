"""Integration tests of the command-line client (`python -m client` against Azurite and the Service Bus emulator)."""
