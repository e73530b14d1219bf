"""Test-session wiring: real services are started by the fixture plugins below, on free loopback ports."""

pytest_plugins = [
    "tests.fixtures.azurite",
    "tests.fixtures.servicebus",
    "tests.fixtures.scoring",
    "tests.fixtures.models",
    "tests.fixtures.stack",
]
