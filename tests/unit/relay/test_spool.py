"""The disk spool: order, commit, restart, size cap, torn lines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from relayguard.relay import spool as spool_module
from relayguard.relay.spool import Spool


def _fill(sp: Spool, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        assert sp.append(b"k%d" % i, b'{"i":%d}' % i)


def _drain(sp: Spool) -> list[bytes]:
    out: list[bytes] = []
    while recs := sp.read(max_records=7):
        out += [r.value for r in recs]
        sp.commit(recs[-1].seq, recs[-1].end)
    return out


def test_order_and_commit_across_segments(tmp_path: Path) -> None:
    sp = Spool(tmp_path, segment_bytes=100)
    _fill(sp, 30)
    assert len(list(tmp_path.glob("seg-*"))) > 3
    assert _drain(sp) == [b'{"i":%d}' % i for i in range(30)]
    assert sp.is_empty() and sp.pending_bytes() == 0
    # only the tail is left, drained, to be written on (REUSE_BYTES)
    assert len(list(tmp_path.glob("seg-*"))) == 1
    sp.close()
    assert not list(tmp_path.glob("seg-*")) or not Spool(tmp_path).read()


def test_key_round_trips(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    sp.append("bøb@example.com".encode(), b'{"a":"x=y\\n"}')
    (rec,) = sp.read()
    assert rec.key == "bøb@example.com".encode() and rec.value == b'{"a":"x=y\\n"}'


def test_survives_restart_mid_replay(tmp_path: Path) -> None:
    sp = Spool(tmp_path, segment_bytes=120)
    _fill(sp, 20)
    recs = sp.read(max_records=5)
    sp.commit(recs[-1].seq, recs[-1].end)
    sp.close()
    again = Spool(tmp_path, segment_bytes=120)
    _fill(again, 2, start=20)
    assert _drain(again) == [b'{"i":%d}' % i for i in range(5, 22)]


def test_full_spool_refuses_never_truncates(tmp_path: Path) -> None:
    sp = Spool(tmp_path, max_bytes=200)
    accepted = 0
    while sp.append(b"k", b'{"i":1}'):
        accepted += 1
    assert accepted > 0 and not sp.append(b"k", b'{"i":1}')
    assert len(_drain(sp)) == accepted


def test_prepend_goes_first(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    _fill(sp, 3, start=10)
    sp.prepend([(b"a", b'{"i":1}'), (b"b", b'{"i":2}')])
    _fill(sp, 1, start=13)
    assert _drain(sp) == [b'{"i":%d}' % i for i in (1, 2, 10, 11, 12, 13)]


def test_prepend_after_a_drain_sends_nothing_twice(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    _fill(sp, 3)
    assert len(_drain(sp)) == 3  # the drained tail is kept for writing on
    sp.prepend([(b"a", b'{"i":-1}')])
    _fill(sp, 1, start=3)
    assert _drain(sp) == [b'{"i":-1}', b'{"i":3}']


def test_prepend_survives_restart(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    _fill(sp, 2, start=10)
    sp.prepend([(b"a", b'{"i":1}')])
    sp.close()
    assert _drain(Spool(tmp_path)) == [b'{"i":1}', b'{"i":10}', b'{"i":11}']


def test_torn_last_line_and_corrupt_line(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    _fill(sp, 2)
    sp.close()
    (seg,) = tmp_path.glob("seg-*")
    with seg.open("ab") as f:
        f.write(b"garbage\n")
        f.write(b'["k",{"i":')  # torn: the crash happened mid-write
    again = Spool(tmp_path)
    _fill(again, 1, start=2)
    assert _drain(again) == [b'{"i":0}', b'{"i":1}', b'{"i":2}']
    assert again.corrupt_lines == 1


def test_low_traffic_writes_on_one_segment_and_loses_nothing_across_restarts(
        tmp_path: Path) -> None:
    # one event at a time appended, read and committed (a quiet relay): no file is created or
    # removed per event, and a restart at any point resumes exactly after the last commit
    sp = Spool(tmp_path)
    sent: list[bytes] = []
    for i in range(200):
        _fill(sp, 1, start=i)
        (rec,) = sp.read()
        sent.append(rec.value)
        sp.commit(rec.seq, rec.end)
        if i % 50 == 24:  # restarts mid-run; the last 25 events in one run
            sp.close()
            sp = Spool(tmp_path)
    assert sent == [b'{"i":%d}' % i for i in range(200)]
    segments = list(tmp_path.glob("seg-*"))
    assert len(segments) == 1
    inode = os.stat(segments[0]).st_ino
    _fill(sp, 3, start=200)
    assert os.stat(segments[0]).st_ino == inode
    sp.close()
    assert _drain(Spool(tmp_path)) == [b'{"i":%d}' % i for i in range(200, 203)]


def test_a_full_drained_tail_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                        ) -> None:
    monkeypatch.setattr(spool_module, "REUSE_BYTES", 64)
    sp = Spool(tmp_path)
    _fill(sp, 10)
    assert len(_drain(sp)) == 10
    assert not list(tmp_path.glob("seg-*"))  # past REUSE_BYTES: gone once drained
    _fill(sp, 1, start=10)
    assert _drain(sp) == [b'{"i":10}']


def test_reads_from_memory_are_what_disk_holds(tmp_path: Path) -> None:
    sp = Spool(tmp_path, segment_bytes=150)
    _fill(sp, 12)
    sp.prepend([(b"p", b'{"i":-1}')])
    from_memory: list[tuple[bytes, bytes, int, int]] = []
    while recs := sp.read(max_records=5):
        from_memory += [(r.key, r.value, r.seq, r.end) for r in recs]
        sp.commit(recs[-1].seq, recs[-1].end)
    fresh = Spool(tmp_path)  # nothing left: all committed
    assert not fresh.read()
    # the same records through a spool that has to read everything back from its files
    again = Spool(tmp_path / "two", segment_bytes=150)
    _fill(again, 12)
    again.prepend([(b"p", b'{"i":-1}')])
    again.close()
    reread = Spool(tmp_path / "two", segment_bytes=150)
    from_disk: list[tuple[bytes, bytes, int, int]] = []
    while recs := reread.read(max_records=5):
        from_disk += [(r.key, r.value, r.seq, r.end) for r in recs]
        reread.commit(recs[-1].seq, recs[-1].end)
    assert from_memory == from_disk
    assert [v for _, v, _, _ in from_memory] == [b'{"i":-1}'] + [b'{"i":%d}' % i
                                                                  for i in range(12)]


def test_memory_cap_falls_back_to_disk_in_order(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_module, "RECENT_BYTES", 100)  # a few records only
    sp = Spool(tmp_path)
    _fill(sp, 20)
    assert _drain(sp) == [b'{"i":%d}' % i for i in range(20)]
    _fill(sp, 3, start=20)
    assert _drain(sp) == [b'{"i":%d}' % i for i in range(20, 23)]


def test_a_torn_or_forged_cursor_replays_from_the_start(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    _fill(sp, 6)
    recs = sp.read(max_records=4)
    sp.commit(recs[-1].seq, recs[-1].end)
    sp.close()
    cursor = tmp_path / "cursor"
    seq, off, crc = cursor.read_text().split()
    assert _drain(Spool(tmp_path)) == [b'{"i":4}', b'{"i":5}']  # a good cursor is obeyed
    for bad in (f"{seq} {int(off) + 9:020d} {crc}\n", f"{seq} {off[:5]}", ""):
        sp = Spool(tmp_path / f"case{len(bad)}")
        _fill(sp, 6)
        recs = sp.read(max_records=4)
        sp.commit(recs[-1].seq, recs[-1].end)
        sp.close()
        (sp.dir / "cursor").write_text(bad)
        # never skips: everything not known to be sent comes again (consumers dedupe)
        assert _drain(Spool(sp.dir)) == [b'{"i":%d}' % i for i in range(6)]


def test_reads_the_cursor_of_an_older_spool(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    _fill(sp, 5)
    recs = sp.read(max_records=2)
    sp.close()
    (tmp_path / "cursor").write_text(f"{recs[-1].seq} {recs[-1].end}\n")  # "seq off"
    again = Spool(tmp_path)
    assert _drain(again) == [b'{"i":%d}' % i for i in range(2, 5)]
    again.close()
    assert len((tmp_path / "cursor").read_text().split()) == 3
