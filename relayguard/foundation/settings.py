"""The one configuration object, read from RELAYGUARD_* environment variables and an optional
TOML file (RELAYGUARD_CONFIG_FILE). The core never sees this: `core_params.py` turns it into frozen
core parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


class Topics(BaseModel):
    prefix: str = "relayguard."

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
    data_dir: Path = Field(Path(".relayguard"), description="worker table stores, spools, caches")
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

    # [kafka security] SASL/TLS for every Kafka client

    # [signing] keys that sign and verify lock and control records

    # [ingest] bounds on what the worker accepts from relays
    max_event_future_seconds: float = Field(
        300.0, gt=0, description="dead-letter events stamped further ahead of the worker's clock "
        "(default: Kerberos' 5-minute clock-skew tolerance)")
    max_event_age_seconds: float = Field(
        7 * 86400.0, gt=0, description="dead-letter events older than this (default: Kafka's "
        "default retention, 7 days); `relayguard replay` is not bounded")
    session_timeout_seconds: float = Field(
        10.0, ge=6, description="worker group session timeout: a dead worker's partitions move "
        "after this (Kafka's own default is 45 s; the broker's minimum is 6 s)")
    heartbeat_interval_seconds: float = Field(
        1.0, gt=0, description="worker group heartbeat (at most a third of the session timeout)")

    # [worker store] table store, recovery and group membership

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
