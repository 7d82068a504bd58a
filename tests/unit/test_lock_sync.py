from relayguard.stream.lock_sync import apply_command
from relayguard.stream.policy import LockState
from relayguard.stream.records import LockCommand


def cmd(action: str, version: int, expires: float | None = None, dry: bool = False) -> LockCommand:
    return LockCommand(f"c{version}", "alice", "user", action, "r", "operator", {}, 1.0,  # type: ignore[arg-type]
                       expires, "cli", version, dry_run=dry)


def test_operator_unlock_clears_a_permanent_lock() -> None:
    locked = LockState(locked=True, remedy="lock", version=10)
    state = apply_command(locked, cmd("unlock", 11))
    assert not state.locked and state.version == 11


def test_older_or_dry_run_commands_change_nothing() -> None:
    locked = LockState(locked=True, remedy="lock", version=10)
    assert apply_command(locked, cmd("unlock", 9)) is locked
    assert apply_command(locked, cmd("unlock", 10)) is locked
    assert apply_command(locked, cmd("unlock", 12, dry=True)) is locked


def test_external_lock_with_ttl_is_a_throttle() -> None:
    state = apply_command(LockState(), cmd("lock", 5, expires=100.0))
    assert state.locked and state.remedy == "throttle" and state.expires_at == 100.0


def test_an_ip_command_brings_its_scope_and_an_unlock_resets_it() -> None:
    narrow = LockCommand("c7", "192.0.2.1", "ip", "lock", "r", "auth_failures_ip",
                         {"scope": "unauthenticated"}, 1.0, 100.0, "w", 7)
    state = apply_command(LockState(), narrow)
    assert state.locked and state.scope == "unauthenticated"
    unlocked = apply_command(state, LockCommand("c8", "192.0.2.1", "ip", "unlock", "r",
                                                "operator", {}, 2.0, None, "cli", 8))
    assert unlocked.scope == "all"


def test_a_scoped_user_command_brings_its_scope() -> None:
    scoped = LockCommand("c9", "alice", "user", "lock", "r", "auth_failures_slow",
                         {"scope": "unfamiliar_networks", "familiar_networks": ["10.1.0.0/16"]},
                         1.0, 100.0, "w", 9)
    assert apply_command(LockState(), scoped).scope == "unfamiliar_networks"
    # the same words on an IP lock mean nothing it knows: all
    as_ip = LockCommand("c9", "192.0.2.1", "ip", "lock", "r", "d", dict(scoped.evidence), 1.0,
                        100.0, "w", 9)
    assert apply_command(LockState(), as_ip).scope == "all"
