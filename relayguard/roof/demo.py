"""`relayguard demo`: a local broker, a worker, a scripted relay fleet, and what gets locked.

Everything runs on this machine on free ports; nothing is left running afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import click
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from relayguard.foundation import signing
from relayguard.foundation.kafka_clients import aiokafka_options
from relayguard.foundation.settings import Settings, load_settings
from relayguard.roof.broker.fetch import stderr_progress
from relayguard.roof.broker.server import LocalBroker
from relayguard.roof.demo_fleet import attack, normal_tick
from relayguard.roof.demo_geodb import write_city_db
from relayguard.roof.demo_scenario import EXPECTED_LOCKS, NORMAL_USERS, scenario
from relayguard.roof.worker_process import WorkerProcess
from relayguard.stream import codec

SETTLE_SECONDS = 3.0
ATTACK_EVERY = 20.0


def _step(text: str) -> None:
    click.secho(f"==> {text}", fg="cyan", err=True)


async def _watch_and_play(settings: Settings, timeout: float, follow: float | None,
                          locked: dict[str, str]) -> None:
    """Play the scenario, print locks/alerts as they arrive, fill `locked` (user -> detector)
    and print the verdict. With `follow` (seconds, inf = until Ctrl-C) keep a simulated fleet
    running afterwards."""
    t = settings.topics
    security = aiokafka_options(settings.kafka)
    consumer = AIOKafkaConsumer(t.locks, t.alerts, bootstrap_servers=settings.bootstrap_servers,
                                auto_offset_reset="earliest", group_id=None, **security)
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers, acks="all",
                                linger_ms=5, **security)
    await consumer.start()
    await producer.start()
    try:
        t0 = time.time()
        phase = None
        for label, event in scenario(t0):
            if label != phase:
                _step(f"relays publish: {label} traffic")
                phase = label
            await producer.send(t.events, codec.encode_event(event), key=event.user.encode()
                                if event.user else event.client_ip.encode())
        await producer.flush()
        _step("waiting for the worker's verdicts (lock commands and alerts)")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(locked) >= len(EXPECTED_LOCKS):
                # Give verdicts that come later (per-IP detectors read a repartition) a moment.
                deadline = min(deadline, time.monotonic() + SETTLE_SECONDS)
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for rec in records:
                    _show(rec.topic, rec.value, t.locks, locked)
        _summary(locked)
        if follow:
            await _follow(producer, consumer, settings, follow)
    finally:
        await producer.stop()
        await consumer.stop()


async def _follow(producer: AIOKafkaProducer, consumer: AIOKafkaConsumer, settings: Settings,
                  seconds: float) -> None:
    t = settings.topics
    until = "until Ctrl-C" if seconds == float("inf") else f"for {seconds:.0f}s"
    _step(f"simulated fleet keeps running {until}: steady traffic, an attack every "
          f"{ATTACK_EVERY:.0f}s")
    rnd, n, end = random.Random(), 0, time.monotonic() + seconds
    next_attack = time.monotonic() + 5
    seen: dict[str, str] = {}
    while time.monotonic() < end:
        events = normal_tick(time.time(), rnd)
        if time.monotonic() >= next_attack:
            kind, victim, bad = attack(n, time.time())
            _step(f"attack #{n + 1}: {kind} on {victim}")
            events += bad
            n, next_attack = n + 1, time.monotonic() + ATTACK_EVERY
        for e in events:
            await producer.send(t.events, codec.encode_event(e),
                                key=(e.user or e.client_ip).encode())
        batch = await consumer.getmany(timeout_ms=2000)
        for records in batch.values():
            for rec in records:
                _show(rec.topic, rec.value, t.locks, seen)


def _show(topic: str, value: bytes, locks_topic: str, locked: dict[str, str]) -> None:
    data = codec.parse_record(value, ("lock_command", "alert"))
    if topic == locks_topic:
        cmd = codec.lock_command_from_dict(data)
        until = "until unlocked" if cmd.expires_at is None else \
            f"for {cmd.expires_at - cmd.issued_at:.0f}s"
        label = "LOCK" if cmd.subject_kind == "user" else "BLOCK"
        click.secho(f"{label:5} {cmd.subject:20} {until:16} [{cmd.detector}] {cmd.reason}",
                    fg="red", bold=True)
        if cmd.action == "lock" and cmd.subject_kind == "user":
            locked[cmd.subject] = cmd.detector
    else:
        alert = codec.alert_from_dict(data)
        click.secho(f"ALERT {alert.subject:20} {alert.severity:16} [{alert.detector}] "
                    f"{alert.summary}", fg="yellow")


def _verdict(locked: dict[str, str]) -> bool:
    """Every scripted attacker locked by the expected detector, no normal user locked."""
    return (all(locked.get(e.user) == e.detector for e in EXPECTED_LOCKS)
            and not any(u in locked for u in NORMAL_USERS))


def _summary(locked: dict[str, str]) -> None:
    click.echo("")
    for exp in EXPECTED_LOCKS:
        hit = locked.get(exp.user) == exp.detector
        mark = click.style("locked", fg="green") if hit else click.style("MISSED", fg="red")
        click.echo(f"  {mark}  {exp.user:20} {exp.story}")
    for user in NORMAL_USERS:
        wrong = user in locked
        mark = click.style("LOCKED", fg="red") if wrong else click.style("left alone", fg="green")
        click.echo(f"  {mark}  {user:20} normal traffic")


@click.command(help="Start a local Kafka broker and a worker, play a scripted relay fleet "
               "(normal users, a brute-forced account, a continent jumper, a spam burst) and "
               "print the lock commands and alerts as they appear. Exits 0 when every attack "
               "was locked and no normal user was.")
@click.option("--timeout", default=60.0, show_default=True, help="seconds to wait for verdicts")
@click.option("--keep", is_flag=True, help="keep the demo's data dir (broker and worker logs)")
@click.option("--follow", is_flag=True,
              help="after the script, keep the monitor and a simulated fleet running "
                   "(steady traffic, an attack every 20 s) until Ctrl-C")
@click.option("--duration", type=float, default=None,
              help="with --follow: stop after this many seconds instead of at Ctrl-C")
def demo(timeout: float, keep: bool, follow: bool, duration: float | None) -> None:
    base = load_settings()
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
        locked: dict[str, str] = {}
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends --follow; clean up below
            asyncio.run(_watch_and_play(settings, timeout, keep_going, locked))
        ok = _verdict(locked)
    finally:
        _step("stopping worker and broker")
        if worker:
            worker.stop()
        broker.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
    if not ok:
        raise SystemExit(1)
