"""The ACL layout relayguard needs on a broker with an authorizer, as data: printed as a table,
as `kafka-acls` commands for operators bringing their own Kafka, or applied directly.

Roles (one SASL user, i.e. principal `User:NAME`, per process kind; one per relay is best):
- relay:    WRITE events and lock-acks, READ locks. Never locks, control or anything else, so a
            stolen relay credential cannot lock, unlock or steer the worker.
- worker:   everything under the topic prefix and under `<app_id>-` (Faust's changelog and
            leader topics it creates), its consumer group, and transactional ids `<app_id>`
            (only used with Faust's exactly_once guarantee).
- operator: READ + WRITE locks (`relayguard lock/unlock/locks`), READ alerts, lock-acks, DLQ.

Applied with confluent-kafka's AdminClient (librdkafka, bundled in its wheels): aiokafka has no
ACL calls, and Kafka's own `kafka-acls` (AclCommand) would need the extra kafka-tools jars and a
JVM start per call.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from relayguard.foundation.errors import ConfigError, DownstreamError
from relayguard.foundation.settings import Topics

Resource = Literal["topic", "group", "transactional-id"]
Pattern = Literal["literal", "prefixed"]
Role = Literal["relay", "worker", "operator"]
WORKER_TOPIC_OPS = ("READ", "WRITE", "DESCRIBE", "CREATE", "DESCRIBE_CONFIGS")


@dataclass(frozen=True)
class AclRule:
    """ALLOW `operations` on one resource (name + pattern) for one principal, from any host."""

    role: Role
    principal: str  # "User:relay-mx1"
    resource: Resource
    name: str
    pattern: Pattern
    operations: tuple[str, ...]


def layout(topics: Topics, app_id: str, *, relays: Sequence[str] = (),
           workers: Sequence[str] = (), operators: Sequence[str] = ()) -> list[AclRule]:
    """Every rule for these users. Users are SASL user names (without `User:`)."""
    rules: list[AclRule] = []
    for user in relays:
        p = f"User:{user}"
        rules += [AclRule("relay", p, "topic", topics.events, "literal", ("WRITE", "DESCRIBE")),
                  AclRule("relay", p, "topic", topics.lock_acks, "literal", ("WRITE", "DESCRIBE")),
                  AclRule("relay", p, "topic", topics.locks, "literal", ("READ", "DESCRIBE"))]
    for user in workers:
        p = f"User:{user}"
        rules += [AclRule("worker", p, "topic", topics.prefix, "prefixed", WORKER_TOPIC_OPS),
                  AclRule("worker", p, "topic", f"{app_id}-", "prefixed", WORKER_TOPIC_OPS),
                  AclRule("worker", p, "group", app_id, "prefixed", ("READ", "DESCRIBE")),
                  AclRule("worker", p, "transactional-id", app_id, "prefixed",
                          ("WRITE", "DESCRIBE"))]
    for user in operators:
        p = f"User:{user}"
        rules += [AclRule("operator", p, "topic", name, "literal", ("READ", "WRITE", "DESCRIBE"))
                  for name in (topics.locks, topics.audit)]  # commands and their audit trail
        rules += [AclRule("operator", p, "topic", name, "literal", ("READ", "DESCRIBE"))
                  for name in (topics.alerts, topics.lock_acks, topics.dlq)]
    for rule in rules:
        if not rule.name:
            raise ConfigError(f"empty {rule.resource} name in the ACL layout for {rule.principal}",
                              "set RELAYGUARD_TOPICS__PREFIX and RELAYGUARD_APP_ID")
    return rules


def table(rules: Iterable[AclRule]) -> str:
    """Markdown table, one row per rule (what the README shows)."""
    rows = ["| role | principal | resource | name | pattern | operations |",
            "|---|---|---|---|---|---|"]
    rows += [f"| {r.role} | `{r.principal}` | {r.resource} | `{r.name}` | {r.pattern} | "
             f"{', '.join(r.operations)} |" for r in rules]
    return "\n".join(rows)


def kafka_acls_commands(rules: Iterable[AclRule], bootstrap: str,
                        command_config: str = "admin.properties") -> str:
    """The same layout as `kafka-acls.sh` invocations (Kafka's own tool), for your own Kafka."""
    flag = {"topic": "--topic", "group": "--group", "transactional-id": "--transactional-id"}
    lines = []
    for r in rules:
        ops = " ".join(f"--operation {_camel(op)}" for op in r.operations)
        pattern = " --resource-pattern-type prefixed" if r.pattern == "prefixed" else ""
        lines.append(f"kafka-acls.sh --bootstrap-server {bootstrap} --command-config "
                     f"{command_config} --add --allow-principal {r.principal} {ops} "
                     f"{flag[r.resource]} '{r.name}'{pattern}")
    return "\n".join(lines)


def _camel(op: str) -> str:
    return "".join(part.capitalize() for part in op.split("_"))


def apply(rules: Sequence[AclRule], client_config: Mapping[str, str],
          timeout: float = 30.0) -> int:
    """Create the rules on the broker (creating an existing ACL is a no-op). Returns how many
    bindings were sent. `client_config` is librdkafka's (kafka_clients.librdkafka_config) for a
    principal allowed to ALTER the cluster (a super user)."""
    try:
        from confluent_kafka.admin import AdminClient

        # the types' own modules: confluent_kafka.admin re-exports them without declaring it
        from confluent_kafka.admin._acl import AclBinding, AclOperation, AclPermissionType
        from confluent_kafka.admin._resource import ResourcePatternType, ResourceType
    except ImportError as exc:  # pragma: no cover - a dependency of relayguard
        raise ConfigError("confluent-kafka is not installed", "pip install confluent-kafka") \
            from exc
    kinds = {"topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
             "transactional-id": ResourceType.TRANSACTIONAL_ID}
    patterns = {"literal": ResourcePatternType.LITERAL, "prefixed": ResourcePatternType.PREFIXED}
    bindings = [AclBinding(kinds[r.resource], r.name, patterns[r.pattern], r.principal, "*",
                           AclOperation[op], AclPermissionType.ALLOW)
                for r in rules for op in r.operations]
    if not bindings:
        return 0
    admin = AdminClient(dict(client_config))
    futures = admin.create_acls(bindings, request_timeout=timeout)
    problems = []
    for binding, fut in futures.items():
        try:
            fut.result(timeout=timeout + 5)
        except Exception as exc:  # KafkaException with the broker's reason
            problems.append(f"{binding.principal} {binding.operation} {binding.restype} "
                            f"{binding.name}: {exc}")
    if problems:
        raise DownstreamError("the broker refused ACLs:\n  " + "\n  ".join(problems[:10]),
                              "apply them as a super user (see super.users), on a broker "
                              "with an authorizer configured")
    return len(bindings)
