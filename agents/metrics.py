"""Worker counters, exposed in Prometheus text format on /metrics."""

from __future__ import annotations

from collections import Counter

PREFIX = "relayguard_worker_"
HELP = {
    "events_total": "Events taken from the events topic, by outcome",
    "dead_letters_total": "Records sent to the dead-letter topic, by reason",
    "findings_total": "Findings raised by the detection core, by detector",
    "lock_commands_total": "Lock commands published, by action",
    "alerts_total": "Alerts published, by detector",
    "rerouted_total": "Events re-keyed because the relay used the wrong key",
    "slack_messages_total": "Alerts posted to Slack (or not), by outcome",
    # [signing]
    "signed_records_refused_total": "Lock commands and control records not obeyed, by source "
    "(locks, control) and reason (unsigned, bad_signature, unknown_key, version_out_of_range, "
    "time_out_of_range, tick_out_of_range, or a malformed-record reason)",

    # [ingest]
    "redeliveries_total": "Events whose source offset was already applied to the key's state "
                          "(at-least-once redelivery), dropped without effect, by kind",
    "offset_gaps_found_total": "Offsets the consumer skipped in a partition, by topic/partition",
    "offset_gaps_healed_total": "Skipped offsets re-read with a side consumer and processed, "
                                "by topic/partition",
    "offset_gaps_lost_total": "Skipped offsets that could not be re-read (deleted by retention?), "
                              "by topic/partition",
    "time_rejected_total": "Events dead-lettered because their time is implausible, by "
                           "direction (future/past)",

    # [worker store]
    "state_undecodable_total": "Table values that could not be decoded and were dropped "
    "(the key starts with empty state), by table",
    "changelog_records_recovered_total": "Table changelog records applied to the local store "
    "(recovery and standby copies), by table",
}


class Metrics:
    def __init__(self) -> None:
        self.counters: dict[str, Counter[tuple[tuple[str, str], ...]]] = {
            name: Counter() for name in HELP
        }

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        self.counters[name][tuple(sorted(labels.items()))] += amount

    def value(self, name: str, **labels: str) -> int:
        return self.counters[name][tuple(sorted(labels.items()))]

    def render(self) -> str:
        lines: list[str] = []
        for name, help_text in HELP.items():
            full = PREFIX + name
            lines.append(f"# HELP {full} {help_text}")
            lines.append(f"# TYPE {full} counter")
            for labels, value in sorted(self.counters[name].items()):
                label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
                lines.append(f"{full}{{{label_text}}} {value}" if labels else f"{full} {value}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
