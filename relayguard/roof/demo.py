"""`relayguard demo`: a local broker, a worker, a scripted relay fleet, and what gets locked.

Everything runs on this machine on free ports; nothing is left running afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import click
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from relayguard.foundation import signing
from relayguard.foundation.errors import DownstreamError
from relayguard.foundation.kafka_clients import aiokafka_options
from relayguard.foundation.settings import Settings, load_settings
from relayguard.relay.lock_follower import LockFollower
from relayguard.roof.broker.fetch import stderr_progress
from relayguard.roof.broker.server import LocalBroker
from relayguard.roof.demo_fleet import attack, normal_tick
from relayguard.roof.demo_geodb import write_city_db
from relayguard.roof.demo_scenario import EXPECTED_LOCKS, NORMAL_USERS, RELAYS, scenario
from relayguard.roof.demo_track import Attack, Tracker
from relayguard.roof.demo_view import DemoView
from relayguard.roof.worker_process import WorkerProcess
from relayguard.stream import codec

SETTLE_SECONDS = 3.0
ATTACK_EVERY = 20.0
FOLLOW_SETTLE_SECONDS = 15.0


def _step(text: str) -> None:
    click.secho(f"==> {text}", fg="cyan", err=True)


async def _start_relays(settings: Settings, keyring: signing.Keyring) -> list[LockFollower]:
    """One lock follower per demo relay, as each relay's hook runs: they apply and ack locks."""
    t = settings.topics
    followers = [LockFollower(settings.bootstrap_servers, t.locks, t.lock_acks, relay,
                              keyring=keyring, max_skew=settings.signing_max_skew_seconds,
                              kafka_options=aiokafka_options(settings.kafka))
                 for relay in RELAYS]
    for f in followers:
        await f.start()
    for f in followers:
        if not await f.ready(30):
            raise DownstreamError(f"relay lock follower {f.relay_id} did not catch up in 30s")
    return followers


async def _watch_and_play(settings: Settings, keyring: signing.Keyring, timeout: float,
                          follow: float | None, tracker: Tracker, live: bool | None) -> None:
    """Play the scenario with relay lock followers running, show what happens, and measure
    each attack's time to lock and to the relays' acks. With `follow` (seconds, inf = until
    Ctrl-C) keep a simulated fleet running afterwards."""
    t = settings.topics
    security = aiokafka_options(settings.kafka)
    followers = await _start_relays(settings, keyring)
    consumer = AIOKafkaConsumer(t.locks, t.alerts, t.lock_acks,
                                bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None, **security)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                linger_ms=5, **security)
    await consumer.start()
    await producer.start()
    view = DemoView(tracker, live)
    try:
        with view:
            view.step(f"{len(followers)} relays follow the lock topic: "
                      + ", ".join(f.relay_id for f in followers))
            phase = None
            stories = {e.user: e for e in EXPECTED_LOCKS}
            for label, event in scenario(time.time()):
                if label != phase:
                    view.step(f"relays publish: {label} traffic")
                    phase = label
                exp = stories.get(event.user or "")
                if exp is not None and exp.user not in tracker.attacks:
                    tracker.add_attack(Attack(exp.story, exp.user, exp.story, exp.detector,
                                              time.time()))
                await producer.send(t.events, codec.encode_event(event),
                                    key=(event.user or event.client_ip).encode())
                tracker.sent(1)
            await producer.flush()
            view.step("waiting for the worker's verdicts and the relays' acks")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if len(tracker.locked) >= len(EXPECTED_LOCKS) and tracker.all_acked():
                    # Give verdicts that come later (per-IP detectors read a repartition) a moment.
                    deadline = min(deadline, time.monotonic() + SETTLE_SECONDS)
                await _drain(consumer, t.locks, t.lock_acks, tracker, view, 500)
            if follow:
                await _follow(producer, consumer, settings, follow, tracker, view)
        view.summary(NORMAL_USERS)
    finally:
        await producer.stop()
        await consumer.stop()
        for f in followers:
            await f.stop()


async def _drain(consumer: AIOKafkaConsumer, locks_topic: str, acks_topic: str,
                 tracker: Tracker, view: DemoView, timeout_ms: int) -> None:
    batch = await consumer.getmany(timeout_ms=timeout_ms)
    for records in batch.values():
        for rec in records:
            _show(rec.topic, rec.value, rec.timestamp / 1000.0, locks_topic, acks_topic,
                  tracker, view)
    view.refresh()


async def _follow(producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, settings: Settings,
                  seconds: float, tracker: Tracker, view: DemoView) -> None:
    t = settings.topics
    until = "until Ctrl-C" if seconds == float("inf") else f"for {seconds:.0f}s"
    view.step(f"simulated fleet keeps running {until}: steady traffic, an attack every "
              f"{ATTACK_EVERY:.0f}s")
    rnd, n, end = random.Random(), 0, time.monotonic() + seconds
    next_attack = time.monotonic() + 5
    while time.monotonic() < end:
        events = normal_tick(time.time(), rnd)
        if time.monotonic() >= next_attack:
            kind, victim, bad = attack(n, time.time())
            view.step(f"attack #{n + 1}: {kind} on {victim}")
            tracker.add_attack(Attack(kind, victim, f"#{n + 1} {kind}", None, time.time()))
            events += bad
            n, next_attack = n + 1, time.monotonic() + ATTACK_EVERY
        for e in events:
            await producer.send(t.events, codec.encode_event(e),
                                key=(e.user or e.client_ip).encode())
        tracker.sent(len(events))
        await _drain(consumer, t.locks, t.lock_acks, tracker, view, 2000)
    # The last attack may have started a moment ago: let its lock and acks arrive.
    settle = time.monotonic() + FOLLOW_SETTLE_SECONDS
    while not tracker.all_acked() and time.monotonic() < settle:
        await _drain(consumer, t.locks, t.lock_acks, tracker, view, 500)


def _show(topic: str, value: bytes | None, record_time: float, locks_topic: str,
          acks_topic: str, tracker: Tracker, view: DemoView) -> None:
    try:
        if topic == acks_topic:
            tracker.on_ack(codec.lock_ack_from_dict(codec.parse_record(value or b"",
                                                                       ("lock_ack",))))
            return
        data = codec.parse_record(value or b"", ("lock_command", "alert"))
    except (codec.Rejected, KeyError, TypeError, ValueError):
        return  # the demo's own topics; nothing else writes there
    if topic == locks_topic:
        cmd = codec.lock_command_from_dict(data)
        if cmd.action != "lock":
            view.line(f"UNLOCK {cmd.subject:19} [{cmd.detector}] {cmd.reason}", "green")
            return
        until = "until unlocked" if cmd.expires_at is None else \
            f"for {cmd.expires_at - cmd.issued_at:.0f}s"
        label = "LOCK" if cmd.subject_kind == "user" else "BLOCK"
        tracker.on_lock(cmd, record_time)
        hit = tracker.attacks.get(cmd.subject)
        lat = f" ({hit.to_lock():.2f}s after its first event)" if hit and hit.to_lock() \
            is not None and hit.lock is cmd else ""
        view.line(f"{label:5} {cmd.subject:20} {until:16} [{cmd.detector}] {cmd.reason}{lat}",
                  "bold red")
    else:
        alert = codec.alert_from_dict(data)
        tracker.findings += 1
        view.line(f"ALERT {alert.subject:20} {alert.severity:16} [{alert.detector}] "
                  f"{alert.summary}", "yellow")


def _verdict(tracker: Tracker) -> bool:
    """Every injected attack locked (the scripted ones by the expected detector), no normal
    user locked, no staff user of the simulated fleet locked."""
    return (all(a.hit for a in tracker.attacks.values())
            and len(tracker.attacks) >= len(EXPECTED_LOCKS)
            and not any(u in tracker.locked for u in NORMAL_USERS)
            and not any(u.startswith("staff") for u in tracker.locked))


@click.command(help="Start a local Kafka broker, a worker and three relays' lock followers, "
               "play a scripted relay fleet (normal users, a brute-forced account, a continent "
               "jumper, a spam burst) and show the monitor at work: a live view on a terminal "
               "(events/s, findings and locks as they happen, each attack's time from its first "
               "event to its lock and to the relays' acks), plain lines otherwise; at the end a "
               "summary table per injected attack. Exits 0 when every attack was locked and no "
               "normal user was.")
@click.option("--timeout", default=60.0, show_default=True, help="seconds to wait for verdicts")
@click.option("--keep", is_flag=True, help="keep the demo's data dir (broker and worker logs)")
@click.option("--follow", is_flag=True,
              help="after the script, keep the monitor and a simulated fleet running "
                   "(steady traffic, an attack every 20 s) until Ctrl-C")
@click.option("--duration", type=float, default=None,
              help="with --follow: stop after this many seconds instead of at Ctrl-C")
@click.option("--plain", is_flag=True, help="plain lines even on a terminal")
def demo(timeout: float, keep: bool, follow: bool, duration: float | None, plain: bool) -> None:
    base = load_settings()
    # The relays' followers log every applied lock; the demo's view shows them instead.
    logging.getLogger("relayguard.relay").setLevel(logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="relayguard-demo-"))
    geo_db = base.geoip_city_db or write_city_db(work / "demo-city.mmdb")
    _step(f"starting a local Kafka broker (data in {work})")
    # The first run downloads the broker jars with Maven: show it rather than hang silently.
    broker = LocalBroker(data_dir=work / "broker", progress=stderr_progress)
    worker: WorkerProcess | None = None
    try:
        broker.start()
        click.echo(f"    broker ready at {broker.bootstrap}", err=True)
        app_id = f"relayguard-demo-{uuid.uuid4().hex[:6]}"
        settings = Settings(bootstrap_servers=broker.bootstrap, app_id=app_id)
        # Ephemeral keys, gone with the temp dir: the worker refuses to run unsigned.
        key_path, _pub, kid = signing.write_key_pair(work / "keys", "demo")
        _step(f"starting the relayguard worker (signing key {kid}, made for this demo)")
        worker = WorkerProcess({
            "RELAYGUARD_SIGNING_KEY_FILE": str(key_path),
            "RELAYGUARD_SIGNING_KEY": "",
            "RELAYGUARD_VERIFY_KEYS_DIR": str(work / "keys"),
            "RELAYGUARD_VERIFY_KEYS": "",
            "RELAYGUARD_BOOTSTRAP_SERVERS": broker.bootstrap,
            "RELAYGUARD_APP_ID": app_id,
            "RELAYGUARD_GEOIP_CITY_DB": str(geo_db),
            "RELAYGUARD_DATA_DIR": str(work / "worker"),
        }, work / "worker.log")
        worker.start()
        click.echo(f"    worker ready, metrics at {worker.url}/metrics", err=True)
        keep_going = (duration or float("inf")) if follow else None
        tracker = Tracker(RELAYS)
        keyring = signing.keyring_from_settings(Settings(verify_keys_dir=work / "keys"))
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends --follow; clean up below
            asyncio.run(_watch_and_play(settings, keyring, timeout, keep_going, tracker,
                                        False if plain else None))
        ok = _verdict(tracker)
    finally:
        _step("stopping worker and broker")
        if worker:
            worker.stop()
        broker.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    if not ok:
        raise SystemExit(1)
