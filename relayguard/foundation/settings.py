"""The one configuration object, read from RELAYGUARD_* environment variables and an optional
TOML file (RELAYGUARD_CONFIG_FILE). The core never sees this: `core_params.py` turns it into frozen
core parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from relayguard.foundation.data_dir import default_data_dir
from relayguard.foundation.kafka_clients import KafkaSecurity
from relayguard.stream.user_names import DEFAULT_USER_NAMES, UserNameMode


class Topics(BaseModel):
    prefix: str = "relayguard."
    # [operator] audit trail
    audit_retention_days: float = Field(
        90.0, gt=0, le=36500, description="how long the audit topic keeps records "
        "(RELAYGUARD_TOPICS__AUDIT_RETENTION_DAYS; default 90 days; applied when the topic is "
        "created)")

    def name(self, short: str) -> str:
        return f"{self.prefix}{short}"

    @property
    def events(self) -> str:
        return self.name("events")

    @property
    def dlq(self) -> str:
        return self.name("events.dlq")

    @property
    def locks(self) -> str:
        return self.name("locks")

    @property
    def lock_acks(self) -> str:
        return self.name("lock-acks")

    @property
    def alerts(self) -> str:
        return self.name("alerts")

    @property
    def events_by_ip(self) -> str:
        return self.name("events.by-ip")

    @property
    def control(self) -> str:
        """Worker-internal: lock commands and expiry ticks routed to the subject's partition."""
        return self.name("control")

    @property
    def audit(self) -> str:
        """Every lock, unlock, expiry and operator action; NOT compacted (kept for retention)."""
        return self.name("audit")


GcThreshold = Annotated[int, Field(ge=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RELAYGUARD_", env_nested_delimiter="__", extra="forbid"
    )

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma separated"
    )
    topics: Topics = Field(default_factory=Topics)
    partitions: int = Field(4, ge=1, description="partitions of the events topic and its tables")
    replication_factor: int = Field(1, ge=1)
    app_id: str = Field("relayguard", description="Faust app id = consumer group + table prefix")
    data_dir: Path = Field(default_factory=default_data_dir, description="spools, checkpoints, "
                           "worker tables [default: /var/lib/relayguard for services, else "
                           "$XDG_STATE_HOME/relayguard; see foundation/data_dir.py]")
    web_port: int = Field(6066, description="worker HTTP port (/metrics, /api)")
    web_host: str = "127.0.0.1"
    geoip_city_db: Path | None = Field(
        None, description="MaxMind GeoLite2/GeoIP2 City or DB-IP City Lite .mmdb file"
    )
    api_token: SecretStr | None = Field(
        None, description="bearer token that allows POST /api/locks on the worker"
    )
    slack_bot_token: SecretStr | None = None
    slack_channel: str | None = None
    slack_webhook_url: SecretStr | None = None
    slack_base_url: str | None = Field(
        None, description="Slack Web API base URL (default Slack's own); for proxies and tests"
    )
    slack_min_severity: Literal["info", "low", "medium", "high", "critical"] = Field(
        "low", description="alerts below this severity are not posted to Slack"
    )
    slack_app_token: SecretStr | None = Field(
        None, description="Slack app-level token (xapp-..., scope connections:write): turns on "
        "the Unlock button through Socket Mode (bot-token mode only); never logged")
    slack_unlock_user_ids: str = Field(
        "", description="Slack user ids (U..., comma separated) whose Unlock clicks are obeyed; "
        "empty = every click is refused")
    slack_storm_threshold: int = Field(
        10, ge=1, description="more than this many subjects alerting within "
        "slack_storm_window_seconds post one digest message instead of one message each")
    slack_storm_window_seconds: float = Field(
        60.0, gt=0, description="span over which slack_storm_threshold is counted")
    slack_digest_update_seconds: float = Field(
        5.0, gt=0, description="during a storm, how often the digest message is brought up to date")
    slack_incidents_kept: int = Field(
        10_000, ge=1, description="incident messages remembered for updates (oldest forgotten)")
    config_file: Path | None = Field(None, description="TOML file with [detectors] and [policy]")
    detectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    policy: dict[str, Any] = Field(default_factory=dict)
    relay_id: str = Field("relay-1", description="this relay's id in events and acks")
    shutdown_grace_seconds: float = Field(
        30.0, gt=0, description="worker: how long a shutdown may wait for Kafka before exiting"
    )
    expiry_check_seconds: float = Field(
        15.0, gt=0, description="how often the worker turns expired throttles into unlocks"
    )
    # [user names] one canonical user name on relays, worker, lock book and CLI
    user_names: UserNameMode = Field(
        DEFAULT_USER_NAMES, description="how user names are compared: lower-addresses "
        "(default: lower-case names that look like addresses or logins), lower (every name), "
        "exact (keep case); always trimmed and NFC-normalised; the same on every host; see "
        "stream/user_names.py")

    # [kafka security] SASL/TLS for every Kafka client
    kafka: KafkaSecurity = Field(
        default_factory=KafkaSecurity,
        description="RELAYGUARD_KAFKA__*: security protocol, SASL user/password, CA; see "
        "relayguard/foundation/kafka_clients.py")

    # [signing] keys that sign and verify lock and control records
    signing_key: SecretStr | None = Field(
        None, description="Ed25519 private key (base64 of 32 bytes, or PEM) that signs lock "
        "commands and control records: worker and operators; never logged")
    signing_key_file: Path | None = Field(
        None, description="file holding the signing key (what `relayguard keys generate` writes)")
    verify_keys: str = Field(
        "", description="public keys whose signatures are obeyed, comma separated (base64 of 32 "
        "bytes or PEM); rotation: list the old and the new key")
    verify_keys_dir: Path | None = Field(
        None, description="directory whose *.pub files are verify keys (added to verify_keys)")
    signing_max_skew_seconds: float = Field(
        300.0, gt=0, le=86400, description="how far a command's version/issued_at may be ahead "
        "of the verifier's clock, and a control tick's `now` off it (default: Kerberos' 5 min)")

    # [ingest] bounds on what the worker accepts from relays
    max_event_future_seconds: float = Field(
        300.0, gt=0, description="dead-letter events stamped further ahead of the worker's clock "
        "(default: Kerberos' 5-minute clock-skew tolerance)")
    max_event_age_seconds: float = Field(
        7 * 86400.0, gt=0, description="dead-letter events older than this (default: Kafka's "
        "default retention, 7 days); `relayguard replay` is not bounded")
    session_timeout_seconds: float = Field(
        10.0, ge=6, le=300, description="worker group session timeout: a dead worker's "
        "partitions move after this (Kafka's own default is 45 s; the broker's minimum is 6 s)")
    heartbeat_interval_seconds: float = Field(
        1.0, gt=0, description="worker group heartbeat (at most a third of the session timeout)")

    # [worker store] table store, recovery and group membership
    table_store: Literal["rocksdb", "memory"] = Field(
        "rocksdb", description="worker tables: rocksdb (on disk under data_dir; a restart "
        "replays only the changelog since the last commit) or memory (rebuilt from the whole "
        "changelog on every start)")
    table_standby_replicas: int = Field(
        1, ge=0, description="warm copies of each table partition that other workers keep "
        "from the changelog, so a failover need not replay it (Faust's default: 1)")

    # [worker batches] the worker's producer (changelog, outputs), sized for its state records
    worker_producer_batch_bytes: int = Field(
        512 * 1024, ge=16384, le=4 * 1024 * 1024, description="the worker producer's batch size "
        "per partition (Kafka's default 16 KiB holds about seven ~2 KB state records; "
        "bench/worker_bench.py measured the default against this one)")
    worker_producer_linger_seconds: float = Field(
        0.02, ge=0, le=0.5, description="how long the worker producer waits to fill a batch "
        "(a lock command waits at most this long before it leaves)")
    worker_gc_thresholds: tuple[GcThreshold, GcThreshold, GcThreshold] = Field(
        (700, 10, 10), description="the worker's garbage-collector thresholds "
        "(gc.set_threshold; CPython's default): replay and simulate run the core with "
        "50000,20,20, where the collector cost it a third of its CPU (bench/core_ab.py), but "
        "in the worker bench/worker_bench.py measured no difference; see "
        "foundation/gc_tuning.py. As JSON in the environment: "
        "RELAYGUARD_WORKER_GC_THRESHOLDS='[50000,20,20]'")
    relay_batch_records: bool = Field(
        True, description="relay hooks (hook postfix, tail, journal) send one batch record "
        "per partition per hand-over instead of one record per event (schemas/event-batch); "
        "false = single-event records, for consumers of the events topic that cannot read "
        "batches; every relayguard reader reads both")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        import os

        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        path = os.environ.get("RELAYGUARD_CONFIG_FILE")
        if path:
            if not Path(path).is_file():
                from relayguard.foundation.errors import ConfigError

                raise ConfigError(f"RELAYGUARD_CONFIG_FILE={path}: no such file",
                                  "fix the path, or unset the variable to use defaults")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(path)))
        return tuple(sources)


def load_settings(**overrides: Any) -> Settings:
    """Settings from env/TOML, with validation errors named the way the operator wrote them."""
    from pydantic import ValidationError

    from relayguard.foundation.errors import ConfigError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            path = "__".join(str(p) for p in err["loc"])
            problems.append(f"RELAYGUARD_{path.upper()} (or '{path}' in the config file): "
                            f"{err['msg']}, got {err.get('input')!r}")
        raise ConfigError("; ".join(problems),
                          "fix the setting; `relayguard --help` lists them") from None
