"""One error tree. Every error says whose fault it is and what the operator should do."""

from __future__ import annotations


class RelayguardError(Exception):
    """Base of every error relayguard raises on purpose."""

    whose = "relayguard"
    hint = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        if hint is not None:
            self.hint = hint

    def explain(self) -> str:
        text = f"{self.whose}: {self}"
        return f"{text}\n  what to do: {self.hint}" if self.hint else text


class ConfigError(RelayguardError):
    """The operator's configuration is wrong."""

    whose = "configuration error"


class MissingToolError(RelayguardError):
    """A program relayguard needs (java, mvn, postfix) is not installed."""

    whose = "missing prerequisite"


class DownstreamError(RelayguardError):
    """Something relayguard talks to (Kafka, Slack, Maven) is down or refused."""

    whose = "downstream outage"


class BadRelayRecord(RelayguardError):
    """A relay sent a record that does not follow the schema."""

    whose = "bad relay record"
