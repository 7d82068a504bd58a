"""Session-wide fixtures live in tests/fixtures/, one module per service, so they stay small."""

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.worker",
    "tests.fixtures.postfix",
    "tests.fixtures.slack",
]
