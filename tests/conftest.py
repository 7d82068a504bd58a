"""Session-wide fixtures live in tests/fixtures/, one module per service, so they stay small."""

from tests.fixtures.signing import export_session_keys

export_session_keys()  # before anything reads settings: see tests/fixtures/signing.py

pytest_plugins = [
    "tests.fixtures.kafka",
    "tests.fixtures.worker",
    "tests.fixtures.postfix",
    "tests.fixtures.slack",
]
