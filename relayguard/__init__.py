"""relayguard: real-time abuse monitor for fleets of SMTP relays.

Floors, from the ground up, each importing only from floors below it:
`schemas` and `stream` (the pure core) -> `foundation` -> `agents` (worker) and `relay` (relay
hooks), which never import each other -> `roof` (the CLI, demo, replay, operator commands).
"""
