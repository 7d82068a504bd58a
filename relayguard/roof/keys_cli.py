"""`relayguard keys`: make and inspect the Ed25519 keys that sign lock and control records."""

from __future__ import annotations

from pathlib import Path

import click

from relayguard.foundation import signing
from relayguard.foundation.cli_errors import friendly_errors
from relayguard.foundation.errors import ConfigError


@click.group("keys")
def keys() -> None:
    """Signing keys for lock commands and control records (see README, 'Signed commands')."""


@keys.command("generate")
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="directory for NAME.key (private, mode 0600) and NAME.pub")
@click.option("--name", default="relayguard", show_default=True,
              help="file name stem, e.g. worker-2026-12 (existing files are never replaced)")
@friendly_errors
def generate(out: Path, name: str) -> None:
    """Write a new key pair; prints the key id and the settings to use (never the key)."""
    key_path, pub_path, kid = signing.write_key_pair(out, name)
    click.echo(f"key id {kid}\n"
               f"  private: {key_path}  -> signers (worker, operators): "
               f"RELAYGUARD_SIGNING_KEY_FILE={key_path}\n"
               f"  public:  {pub_path}  -> every verifier (relays, workers, operators): copy "
               f"into the directory named by RELAYGUARD_VERIFY_KEYS_DIR")


@keys.command("id")
@click.argument("path", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@friendly_errors
def key_id(path: Path) -> None:
    """Print the key id of a .pub or .key file (what records carry in signature.key_id)."""
    text = path.read_text()
    try:
        public = signing.load_public(text, str(path))
    except ConfigError:
        public = signing.load_private(text, str(path)).public_key()
    click.echo(signing.key_id(public))
