# ruff: noqa: E501  (generated log lines are as long as real ones)
"""Lines per second of the mail-log parser on a large mixed log, against a bare-regex baseline.

    .venv/bin/python bench/log_parser_bench.py [--lines 500000] [--seed 7] [--repeat 3] [--write FILE]
        [--fail2ban ROOT | --no-fail2ban] [--profile]

Generates a log like a busy submission relay's (Postfix queue/delivery lines, smtpd sessions
with TLS, SASL successes and failures, Dovecot auth verdicts, imap sessions, a share of Exim
mainlog and syslog noise, several header forms), then times on the same lines, in this process:

- baseline: one fail2ban-style regex search per line (the Postfix SASL failure rule alone, with
  nothing extracted beyond the match): what a "grep for failures" costs;
- bare two-regex loop: the Postfix SASL failure rule and a Dovecot auth-failure rule, one
  search each per line: the ceiling for a parser that finds the same failures;
- parser: relay.log_parser.LogParser.feed, which handles every format and keeps session state;
- fail2ban-regex (Debian's fail2ban 1.0.2, unpacked by scripts/fetch-fail2ban.sh) with its
  postfix[mode=auth] and dovecot filters on the same log written to a file, each run once; its
  start-up (a run on an empty file) is taken off its time. Skipped with a note when absent.
Match counts are printed side by side: failures found must agree. --profile prints cProfile's
top functions of one LogParser.feed pass.

Prints lines/s of each, events found, and the share of lines the prefilter let through. Rates are
per CPU second (time.process_time, and getrusage of the fail2ban-regex child), not wall time:
on a shared, loaded host the wall clock also counts the time other processes held the CPU. The
figures depend on the machine; compare them within one run.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from relayguard.relay import log_patterns
from relayguard.relay.log_parser import LogParser
from relayguard.stream.records import LoginEvent

F2B_ROOT = Path.home() / ".cache" / "relayguard" / "fail2ban" / "root"

BASELINE = re.compile(
    r"warning: [-._\w]+\[(?P<host>[0-9a-fA-F.:]+)\](?::\d+)?: SASL (?:LOGIN|PLAIN|"
    r"(?:CRAM|DIGEST)-MD5) authentication failed:"
)
DOVECOT = re.compile(r"dovecot: auth: [-\w]+\((?P<user>[^,()]*),(?P<ip>[0-9a-fA-F.:]+)(?:,[^)]*)?\): "
                     r"(?:unknown user|invalid credentials|Password mismatch)")


def _child_cpu() -> float:
    """CPU seconds of finished child processes (fail2ban-regex runs)."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def fail2ban(root: Path, log: Path, filt: str) -> tuple[float, int]:
    """Seconds (start-up taken off) and matches of fail2ban-regex FILTER on LOG."""
    env = {**os.environ, "PYTHONPATH": str(root / "usr/lib/python3/dist-packages")}
    cmd = ["python3", str(root / "usr/bin/fail2ban-regex"), "--config", str(root / "etc/fail2ban")]

    def run(path: Path) -> tuple[float, int]:
        t0 = _child_cpu()
        out = subprocess.run([*cmd, str(path), filt], env=env, capture_output=True, text=True,
                             check=True, timeout=1800).stdout
        m = re.search(r"^Lines: \d+ lines, \d+ ignored, (\d+) matched", out, re.M)
        if m is None:
            raise RuntimeError(f"unexpected fail2ban-regex output:\n{out[-2000:]}")
        return _child_cpu() - t0, int(m.group(1))

    with tempfile.NamedTemporaryFile("w", suffix=".log") as empty:
        empty.write("\n")
        empty.flush()
        startup, _ = run(Path(empty.name))
    seconds, matches = run(log)
    return max(seconds - startup, 1e-9), matches


def generate(n: int, seed: int) -> list[str]:
    rnd = random.Random(seed)
    start = datetime(2026, 11, 29, 0, 0, 0, tzinfo=UTC).timestamp()
    out: list[str] = []
    t = start
    pid = 20000
    while len(out) < n:
        t += rnd.random() * 0.05
        stamp = datetime.fromtimestamp(t, UTC).strftime("%b %d %H:%M:%S")
        ip = f"198.51.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        user = f"user{rnd.randrange(5000)}@example.com"
        qid = f"{rnd.getrandbits(40):010X}"
        r = rnd.random()
        if r < 0.45:  # queue manager, deliveries, cleanup: most of a mail log
            out.append(rnd.choice((
                f"{stamp} mx1 postfix/qmgr[900]: {qid}: from=<{user}>, size={rnd.randrange(900, 90000)}, nrcpt=1 (queue active)",
                f"{stamp} mx1 postfix/smtp[{pid}]: {qid}: to=<x{rnd.randrange(99)}@example.org>, relay=mx.example.org[192.0.2.9]:25, delay=0.3, delays=0.1/0/0.1/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok)",
                f"{stamp} mx1 postfix/cleanup[{pid}]: {qid}: message-id=<{rnd.getrandbits(64):x}@example.com>",
                f"{stamp} mx1 postfix/qmgr[900]: {qid}: removed",
            )))
        elif r < 0.70:  # one smtpd session
            pid += 1
            sm = f"{stamp} mx1 postfix/submission/smtpd[{pid}]: "
            out.append(sm + f"connect from unknown[{ip}]")
            out.append(sm + f"Anonymous TLS connection established from unknown[{ip}]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)")
            if rnd.random() < 0.3:
                out.append(f"{stamp} mx1 dovecot: auth: passwd-file({user},{ip}): Password mismatch")
                out.append(sm + f"warning: unknown[{ip}]: SASL LOGIN authentication failed: UGFzc3dvcmQ6")
            else:
                out.append(sm + f"{qid}: client=unknown[{ip}], sasl_method=PLAIN, sasl_username={user}")
                if rnd.random() < 0.05:  # a message that bounces: a delivery event
                    out.append(f"{stamp} mx1 postfix/smtp[{pid + 7}]: {qid}: to=<gone{rnd.randrange(99)}@dead.example>, relay=mx.dead.example[192.0.2.8]:25, delay=0.4, delays=0.1/0/0.2/0.1, dsn=5.1.1, status=bounced (host mx.dead.example[192.0.2.8] said: 550 5.1.1 User unknown (in reply to RCPT TO command))")
            out.append(sm + f"disconnect from unknown[{ip}] ehlo=1 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=7")
        elif r < 0.85:  # imap sessions: Dovecot noise
            out.append(rnd.choice((
                f"{stamp} mx1 dovecot: imap-login: Login: user=<{user}>, method=PLAIN, rip={ip}, lip=192.0.2.1, mpid={pid}, TLS, session=<a{pid}>",
                f"{stamp} mx1 dovecot: imap({user})<{pid}><a{pid}>: Logged out in=45 out=1200 deleted=0 expunged=0",
                f"{stamp} mx1 dovecot: lmtp({user})<{pid}><K{pid}>: msgid=<{qid}@example.org>: saved mail to INBOX",
            )))
        elif r < 0.95:  # Exim mainlog
            es = datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")
            out.append(rnd.choice((
                f"{es} 1tAb{pid:06d}-000123-AB <= {user} H=mail.example.net [{ip}]:25 P=esmtps X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=no S=4000 id=x@y",
                f"{es} 1tAb{pid:06d}-000123-AB => x@example.org R=dnslookup T=remote_smtp H=mx.example.org [192.0.2.99]",
                f"{es} 1tAb{pid:06d}-000123-AB Completed",
                f"{es} login authenticator failed for ([{ip}]) [{ip}]:{rnd.randrange(1024, 65535)}: 535 Incorrect authentication data (set_id={user})",
            )))
        else:  # other programs, other header forms
            out.append(rnd.choice((
                f"{stamp} mx1 sshd[{pid}]: Failed password for root from {ip} port 22 ssh2",
                f"{stamp} mx1 CRON[{pid}]: (root) CMD (run-parts /etc/cron.hourly)",
                f"<22>1 {datetime.fromtimestamp(t, UTC).isoformat()} mx1 postfix/qmgr 900 - - {qid}: removed",
                f"{datetime.fromtimestamp(t, UTC).isoformat()} mx1 postfix/smtpd[{pid}]: warning: unknown[{ip}]: SASL PLAIN authentication failed: , sasl_username={user}",
            )))
    return out[:n]


def feed_all(lines: list[str], ref: float) -> tuple[int, Counter[str]]:
    """Events found, and failed logins by source (postfix-log, exim-log, ...), as `hook tail`
    runs the parser: delivery outcomes on (taken after each line, as the follower does)."""
    parser = LogParser("bench", deliveries=True)
    events = 0
    failures: Counter[str] = Counter()
    feed = parser.feed
    pop = parser.pop_deliveries
    for i, line in enumerate(lines):
        for ev in feed(line, ref, str(i)):
            events += 1
            if isinstance(ev, LoginEvent) and not ev.success:
                failures[ev.source] += 1
        for d in pop():
            events += 1
            failures["delivery " + d.status] += 1
    return events, failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lines", type=int, default=500_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each; the best is shown")
    ap.add_argument("--write", type=Path, help="also write the generated log here")
    ap.add_argument("--fail2ban", type=Path, default=F2B_ROOT, help="unpacked fail2ban package")
    ap.add_argument("--no-fail2ban", action="store_true")
    ap.add_argument("--profile", action="store_true", help="cProfile one LogParser.feed pass")
    args = ap.parse_args()
    lines = generate(args.lines, args.seed)
    if args.write:
        args.write.write_text("\n".join(lines) + "\n")
    ref = datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC).timestamp()

    base_s = two_s = parse_s = float("inf")
    hits = two_pf = two_dc = events = 0
    failures: Counter[str] = Counter()
    for _ in range(args.repeat):  # best of N: the machine is shared, the minimum is the cost
        t0 = time.process_time()
        hits = 0
        search = BASELINE.search
        for line in lines:
            if search(line):
                hits += 1
        base_s = min(base_s, time.process_time() - t0)

        t0 = time.process_time()
        two_pf = two_dc = 0
        search2 = DOVECOT.search
        for line in lines:
            if search(line):
                two_pf += 1
            elif search2(line):
                two_dc += 1
        two_s = min(two_s, time.process_time() - t0)

        t0 = time.process_time()
        events, failures = feed_all(lines, ref)
        parse_s = min(parse_s, time.process_time() - t0)
    passed = sum(1 for line in lines if log_patterns.may_matter(line))

    n = len(lines)
    print(f"lines {n:,} (mixed Postfix/Dovecot/Exim/other, several header forms)")
    print(f"baseline one-regex search : {n / base_s:>12,.0f} lines/s  ({hits:,} Postfix "
          f"failure matches)")
    print(f"bare two-regex loop       : {n / two_s:>12,.0f} lines/s  ({two_pf:,} Postfix + "
          f"{two_dc:,} Dovecot failure matches)")
    print(f"LogParser.feed            : {n / parse_s:>12,.0f} lines/s  ({events:,} login + delivery events,"
          f" prefilter passed {passed / n:.0%} of lines)")
    print("LogParser failed logins   : " + ", ".join(f"{k} {v:,}" for k, v in
                                                      sorted(failures.items()))
          + " (a Dovecot verdict joins its Postfix failure: one attempt, one event)")
    print(f"parser / two-regex loop   : {two_s / parse_s:.1%} of its rate")
    if args.no_fail2ban:
        pass
    elif not (args.fail2ban / "usr/bin/fail2ban-regex").exists():
        print(f"fail2ban-regex skipped: {args.fail2ban} missing (run scripts/fetch-fail2ban.sh)")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp) / "mail.log"
            log.write_text("\n".join(lines) + "\n")
            for filt in ("postfix[mode=auth]", "dovecot"):
                secs, matches = fail2ban(args.fail2ban, log, filt)
                print(f"fail2ban-regex {filt:<18}: {n / secs:>8,.0f} lines/s  ({matches:,} "
                      f"matches; LogParser.feed {secs / parse_s:.2f}x its rate)")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(feed_all, lines, ref)
        pstats.Stats(prof).sort_stats("tottime").print_stats(14)


if __name__ == "__main__":
    main()
