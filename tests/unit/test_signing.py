"""Keys, keyrings and the settings that name them: what signs, what verifies, what is refused."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from relayguard.foundation import signing
from relayguard.foundation.errors import ConfigError
from relayguard.foundation.settings import Settings
from relayguard.stream import codec, signed
from relayguard.stream.records import LockCommand

NOW = 1_796_000_000.0
SKEW = 300.0
CMD = LockCommand("c1", "alice@example.com", "user", "unlock", "ticket 7", "operator", {},
                  NOW, None, "cli:ops", int(NOW * 1000))


def _clean(**kw: Any) -> Settings:
    base: dict[str, Any] = {"signing_key": None, "signing_key_file": None,
                               "verify_keys": "", "verify_keys_dir": None}
    return Settings(**{**base, **kw})


def test_signed_command_verifies_and_names_its_key() -> None:
    signer = signing.Signer(signing.generate())
    raw = codec.encode_lock_command(CMD, signer)
    ring = signing.Keyring([signer.public])
    assert codec.decode_signed_lock_command(raw, ring, NOW, SKEW) == CMD
    assert codec.parse_record(raw, ("lock_command",))["signature"]["key_id"] == signer.key_id
    assert signer.key_id.startswith("ed25519:") and len(signer.key_id) == 24


@pytest.mark.parametrize(("mangle", "reason"), [
    (lambda d: {k: v for k, v in d.items() if k != "signature"}, "unsigned"),
    (lambda d: {**d, "action": "lock"}, "bad_signature"),
    (lambda d: {**d, "signature": {**d["signature"], "sig": "A" * 86}}, "bad_signature"),
    (lambda d: {**d, "signature": {**d["signature"], "key_id": "ed25519:0000000000000000"}},
     "unknown_key"),
    (lambda d: {**d, "version": 1e300}, "version_out_of_range"),
    (lambda d: {**d, "version": 2**53}, "version_out_of_range"),
    (lambda d: {**d, "version": int((NOW + SKEW + 1) * 1000)}, "version_out_of_range"),
    (lambda d: {**d, "issued_at": "2026-12-01T00:00:00Z"}, "time_out_of_range"),
    (lambda d: {**d, "action": "lock", "expires_at": "9999-12-31T23:59:59Z"},
     "time_out_of_range"),
])
def test_each_kind_of_forgery_is_refused_with_its_reason(mangle: object, reason: str) -> None:
    signer = signing.Signer(signing.generate())
    d = codec.signed_lock_command(CMD, signer)
    raw = codec.dumps(mangle(d))  # type: ignore[operator]
    with pytest.raises(codec.Rejected) as err:
        codec.decode_signed_lock_command(raw, signing.Keyring([signer.public]), NOW, SKEW)
    assert err.value.reason == reason, err.value


def test_a_key_outside_the_ring_is_unknown_even_when_the_signature_is_good() -> None:
    attacker, trusted = signing.Signer(signing.generate()), signing.Signer(signing.generate())
    raw = codec.encode_lock_command(CMD, attacker)
    with pytest.raises(codec.Rejected) as err:
        codec.decode_signed_lock_command(raw, signing.Keyring([trusted.public]), NOW, SKEW)
    assert err.value.reason == "unknown_key"


def test_no_signing_key_is_a_named_config_error_that_says_how_to_make_one() -> None:
    with pytest.raises(ConfigError) as err:
        signing.signer_from_settings(_clean())
    text = err.value.explain()
    assert "RELAYGUARD_SIGNING_KEY" in text and "relayguard keys generate" in text
    with pytest.raises(ConfigError) as err:
        signing.keyring_from_settings(_clean())
    assert "RELAYGUARD_VERIFY_KEYS" in err.value.explain()


def test_keys_from_files_and_env_and_the_secret_never_printed(tmp_path: Path) -> None:
    key_path, _pub, kid = signing.write_key_pair(tmp_path / "keys", "w1")
    assert key_path.stat().st_mode & 0o077 == 0  # private key readable by its owner only
    signer = signing.signer_from_settings(_clean(signing_key_file=key_path))
    assert signer.key_id == kid and kid in repr(signer)
    key_text = key_path.read_text()
    assert key_text.split("\n")[1] not in repr(signer)
    other = signing.generate()
    ring = signing.keyring_from_settings(_clean(
        verify_keys_dir=tmp_path / "keys", verify_keys=signing.public_text(other.public_key())))
    assert set(ring.keys) == {kid, signing.key_id(other.public_key())}
    env_signer = signing.signer_from_settings(_clean(signing_key=signing.private_text(other)))
    assert env_signer.key_id == signing.key_id(other.public_key())
    assert signing.private_text(other) not in repr(_clean(signing_key=signing.private_text(other)))
    with pytest.raises(ConfigError):
        signing.write_key_pair(tmp_path / "keys", "w1")  # never overwrites a key in use


def test_bad_key_text_and_conflicting_settings_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not an Ed25519 private key"):
        signing.signer_from_settings(_clean(signing_key="bm90IGEga2V5"))
    with pytest.raises(ConfigError, match="not an Ed25519 public key"):
        signing.keyring_from_settings(_clean(verify_keys="zzz"))
    key_path, _, _ = signing.write_key_pair(tmp_path, "k")
    with pytest.raises(ConfigError, match="both"):
        signing.signer_from_settings(_clean(signing_key_file=key_path,
                                            signing_key=signing.private_text(signing.generate())))


def test_signature_covers_the_domain_and_the_whole_record() -> None:
    d = codec.lock_command_to_dict(CMD)
    assert signed.canonical(d).startswith(signed.DOMAIN)
    assert signed.canonical(d) == signed.canonical({**d, "signature": {"anything": 1}})
    assert signed.canonical(d) != signed.canonical({**d, "evidence": {"x": 1}})


def test_a_relay_without_verify_keys_refuses_to_start(monkeypatch: pytest.MonkeyPatch,
                                                      tmp_path: Path) -> None:
    from click.testing import CliRunner

    from relayguard.relay.lock_follower import LockFollower
    from relayguard.roof.cli import main

    monkeypatch.setenv("RELAYGUARD_VERIFY_KEYS", "")
    monkeypatch.setenv("RELAYGUARD_SIGNING_KEY", "")
    monkeypatch.setenv("RELAYGUARD_DATA_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="no verify keys"):
        LockFollower("127.0.0.1:9", "locks", "acks", "relay-x")
    result = CliRunner().invoke(main, ["hook", "postfix", "--listen", "inet:127.0.0.1:0"])
    assert result.exit_code == 2, result.output
    assert "configuration error: no verify keys" in result.output


def test_a_key_dir_is_reread_so_rotation_needs_no_restart(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    _, _, old_id = signing.write_key_pair(keys, "old")
    old = signing.signer_from_settings(_clean(signing_key_file=keys / "old.key"))
    new_key = signing.generate()
    new = signing.Signer(new_key)
    clock = [0.0]
    ring = signing.Keyring(loader=lambda: signing.read_key_dir(keys), clock=lambda: clock[0])
    raw_new = codec.encode_lock_command(CMD, new)
    raw_old = codec.encode_lock_command(CMD, old)
    with pytest.raises(codec.Rejected, match="unknown_key"):
        codec.decode_signed_lock_command(raw_new, ring, NOW, SKEW)
    (keys / "new.pub").write_text(signing.public_text(new.public))  # step 1 of a rotation
    with pytest.raises(codec.Rejected, match="unknown_key"):  # reloads at most every 5 s
        codec.decode_signed_lock_command(raw_new, ring, NOW, SKEW)
    clock[0] = 6.0  # an unknown key id makes the ring look again
    assert codec.decode_signed_lock_command(raw_new, ring, NOW, SKEW) == CMD
    assert codec.decode_signed_lock_command(raw_old, ring, NOW, SKEW) == CMD
    (keys / "old.pub").unlink()  # step 3: retire the old key
    clock[0] = 20.0
    assert codec.decode_signed_lock_command(raw_old, ring, NOW, SKEW) == CMD  # not yet re-read
    clock[0] = 40.0  # the periodic re-read (every 30 s) drops it
    with pytest.raises(codec.Rejected, match="unknown_key"):
        codec.decode_signed_lock_command(raw_old, ring, NOW, SKEW)
    assert old_id not in ring.keys and new.key_id in ring.keys
    (keys / "broken.pub").write_text("half a key")
    clock[0] = 80.0  # a bad file is logged and the ring kept, never an exception
    assert codec.decode_signed_lock_command(raw_new, ring, NOW, SKEW) == CMD
