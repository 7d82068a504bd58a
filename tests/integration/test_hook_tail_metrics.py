"""`relayguard hook tail --metrics-listen`: a real tail process serves its counters. Kafka is
unreachable on purpose (127.0.0.1:1): the events wait in the spool, and the metrics say so."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from relayguard.roof.broker.config import free_port
from tests.integration.hook_process import RELAYGUARD
from tests.metrics_text import families, scrape, value


def _line(n: int) -> str:
    return (f"Nov 29 10:15:{n:02d} mx1 postfix/smtpd[{1000 + n}]: warning: unknown"
            f"[192.0.2.{n + 1}]: SASL PLAIN authentication failed: (reason unavailable), "
            f"sasl_username=u{n}\n")


def test_hook_tail_serves_metrics(tmp_path: Path) -> None:
    log = tmp_path / "mail.log"
    log.write_text("".join(_line(n) for n in range(3)) + "Nov 29 10:16:00 mx1 cron[1]: noise\n")
    port = free_port()
    out = tmp_path / "tail.out"
    with out.open("wb") as fh:
        proc = subprocess.Popen(
            [RELAYGUARD, "hook", "tail", str(log), "--from-start", "--timezone", "UTC",
             "--bootstrap", "127.0.0.1:1", "--relay-id", "relay-tail",
             "--metrics-listen", f"127.0.0.1:{port}"],
            stdout=fh, stderr=subprocess.STDOUT,
            env={**os.environ, "RELAYGUARD_DATA_DIR": str(tmp_path / "data")})
    try:
        deadline = time.monotonic() + 30
        fams: dict = {}  # type: ignore[type-arg]
        while time.monotonic() < deadline:
            assert proc.poll() is None, out.read_text()[-3000:]
            text = scrape(f"http://127.0.0.1:{port}/metrics")
            if text is not None:
                fams = families(text)
                # the producer reports "spooling" once its first try to reach Kafka failed,
                # which may come a moment after the three events were accepted
                if value(fams, "relayguard_hook_events_accepted_total") == 3 and value(
                        fams, "relayguard_hook_producer_state", state="spooling") == 1:
                    break
            time.sleep(0.2)
        else:
            raise AssertionError(f"no 3 accepted events while spooling on /metrics\n"
                                 f"{out.read_text()[-3000:]}")
        assert value(fams, "relayguard_hook_info", relay_id="relay-tail") == 1
        assert value(fams, "relayguard_hook_source_records_total") == 4  # the noise line too
        assert value(fams, "relayguard_hook_source_events_total") == 3
        assert value(fams, "relayguard_hook_events_sent_total", path="direct") == 0
        assert value(fams, "relayguard_hook_spool_records") == 3
        assert (value(fams, "relayguard_hook_spool_bytes") or 0) > 0
        assert value(fams, "relayguard_hook_producer_state", state="spooling") == 1
        assert "relayguard_hook_policy_requests" not in fams  # no policy service in `tail`
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
