"""Alerts as Slack messages (Block Kit), pure: what an operator needs to act, within Slack's
limits (header <= 150 chars, <= 10 fields per section, <= 50 blocks, always a fallback text)."""

from __future__ import annotations

from typing import Any

from relayguard.agents.slack_incidents import Status
from relayguard.stream.records import Alert
from relayguard.stream.timefmt import to_rfc3339

HEADER_MAX = 150
FIELDS_MAX = 10
FIELD_TEXT_MAX = 2000
EMOJI = {"info": ":information_source:", "low": ":large_blue_circle:",
         "medium": ":large_orange_circle:", "high": ":red_circle:", "critical": ":rotating_light:"}
UNLOCK_ACTION = "relayguard_unlock"  # action_id of the Unlock button (agents/slack_socket.py)
STATUS_EMOJI = {"open": ":lock:", "changed": ":arrows_counterclockwise:",
                "lifted": ":unlock:", "expired": ":hourglass:"}
REMEDY = {"alert": "alert only", "throttle": "throttled (lock with expiry)",
          "lock": "locked until unlocked"}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def fallback_text(alert: Alert) -> str:
    dry = " [dry-run]" if alert.dry_run else ""
    return _clip(f"relayguard {alert.severity}{dry}: {alert.summary}", 3000)


def _flatten(evidence: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key, value in evidence.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out += _flatten(value, f"{name}.")
        elif isinstance(value, list):
            out.append((name, ", ".join(str(v) for v in value[:20])
                        + (f" (+{len(value) - 20} more)" if len(value) > 20 else "")))
        else:
            out.append((name, str(value)))
    return out


def status_text(alert: Alert, status: Status) -> str:
    """The fallback text of an updated message (notifications and screen readers use it)."""
    return _clip(f"relayguard [{status.kind}] {alert.subject_kind} {alert.subject}: "
                 f"{status.text}", 3000)


def unlock_value(alert: Alert) -> str:
    return f"{alert.subject_kind}:{alert.subject}"  # <= 330 chars: subjects are <= 320


def blocks(alert: Alert, status: Status | None = None,
           unlock_button: bool = False) -> list[dict[str, Any]]:
    """The incident message; with `status` once a lock command changed it (lifted, expired,
    changed), with an Unlock button while the subject is locked and Socket Mode is on."""
    header = f"{alert.severity.upper()}: {alert.detector} on {alert.subject_kind} {alert.subject}"
    facts = [
        ("Subject", f"{alert.subject_kind} `{alert.subject}`"),
        ("Action", REMEDY[alert.remedy] + (" — dry-run, not enforced" if alert.dry_run else "")),
        ("Detector", alert.detector),
        ("Seen at", to_rfc3339(alert.event_time)),
    ]
    if alert.command_id:
        facts.append(("Command", f"`{alert.command_id}`"))
    evidence = _flatten(alert.evidence)
    lead = f"{EMOJI[alert.severity]} {_clip(alert.summary, 2900)}"
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _clip(header, HEADER_MAX)}},
        {"type": "section", "text": {"type": "mrkdwn", "text": lead},
         "fields": [_field(k, v) for k, v in facts]},
    ]
    for start in range(0, min(len(evidence), 40), FIELDS_MAX):  # 4 sections of evidence at most
        chunk = evidence[start:start + FIELDS_MAX]
        out.append({"type": "section", "fields": [_field(k, v) for k, v in chunk]})
    if len(evidence) > 40:
        out.append({"type": "context", "elements": [
            {"type": "mrkdwn", "text": f"{len(evidence) - 40} more evidence fields in the "
                                       f"alerts topic (alert `{alert.alert_id}`)"}]})
    if status is not None and status.text:
        out.append({"type": "section", "text": {
            "type": "mrkdwn",
            "text": _clip(f"{STATUS_EMOJI[status.kind]} *{status.kind}*: {status.text}", 2900)}})
    locked = alert.remedy != "alert" and not alert.dry_run
    if unlock_button and (locked or (status is not None and status.kind == "changed")) \
            and not (status is not None and status.closed):
        out.append({"type": "actions", "block_id": "relayguard_actions", "elements": [{
            "type": "button", "action_id": UNLOCK_ACTION, "style": "danger",
            "text": {"type": "plain_text", "text": "Unlock"}, "value": unlock_value(alert),
            "confirm": {"title": {"type": "plain_text", "text": "Unlock?"},
                        "text": {"type": "plain_text",
                                 "text": _clip(f"Let {alert.subject} send mail again.", 300)},
                        "confirm": {"type": "plain_text", "text": "Unlock"},
                        "deny": {"type": "plain_text", "text": "Cancel"}}}]})
    out.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": f"unlock: `relayguard unlock {alert.subject}"
                                   f"{' --ip' if alert.subject_kind == 'ip' else ''} "
                                   f"--reason \"...\"`"}]})
    return out


def _field(name: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _clip(f"*{name}*\n{value}", FIELD_TEXT_MAX)}
