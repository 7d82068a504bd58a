"""The roof: the `relayguard` command and what only it runs (demo, replay, operator commands,
the local broker tooling, the worker as a child process). May import every floor below it;
nothing below imports it (`tests/unit/test_import_rules.py` enforces it).
"""
