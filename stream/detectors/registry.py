"""Every detector the core knows, by name. Adding a detector = a module + one line here
(+ a golden file in tests/golden/<name>.json, which a test insists on)."""

from __future__ import annotations

from relayguard.stream.detector import AnySpec
from relayguard.stream.detectors import (
    auth_failures,
    auth_failures_ip,
    auth_failures_slow,
    correlation,
    distributed_guessing,
    dormant_account,
    impossible_travel,
    new_country,
    password_spray,
    plaintext_auth,
    sending_profile,
    shared_credential,
    too_many_places,
    volume,
    volume_baseline,
)
from relayguard.stream.records import Event, LoginEvent

ALL: tuple[AnySpec, ...] = (
    volume.SPEC,
    auth_failures.SPEC,
    impossible_travel.SPEC,
    volume_baseline.SPEC,
    auth_failures_ip.SPEC,
    password_spray.SPEC,
    distributed_guessing.SPEC,
    auth_failures_slow.SPEC,
    new_country.SPEC,
    too_many_places.SPEC,
    plaintext_auth.SPEC,
    dormant_account.SPEC,
    shared_credential.SPEC,
    sending_profile.SPEC,
    correlation.SPEC,  # reads the others' findings in on_findings
)

BY_NAME: dict[str, AnySpec] = {spec.name: spec for spec in ALL}

# The three detectors the core started with; the benchmark's baseline.
SPINE: tuple[AnySpec, ...] = (volume.SPEC, auth_failures.SPEC, impossible_travel.SPEC)


def needs_ip_state(event: Event) -> bool:
    """Whether an event matters to the per-IP detectors (auth_failures_ip, password_spray): they
    read failed logins only. The worker's by-IP repartition and `replay` step IP keys for these
    events alone, so ordinary senders create no IP state. A test holds every IP-keyed detector
    in ALL to this."""
    return isinstance(event, LoginEvent) and not event.success
