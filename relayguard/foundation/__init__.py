"""The shared foundation: what both sides (the worker in `relayguard.agents`, the relay hooks in
`relayguard.relay`) stand on. Settings, the error tree, GeoIP lookup, topic names and creation,
core parameter building, Kafka helpers and lock administration.

Imports only the ground floor (`relayguard.schemas`, `relayguard.stream`); never the two sides
or the roof (`tests/unit/test_import_rules.py` enforces it).
"""
