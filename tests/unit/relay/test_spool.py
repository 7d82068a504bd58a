"""The disk spool: order, commit, restart, size cap, torn lines."""

from __future__ import annotations

from pathlib import Path

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
    assert not list(tmp_path.glob("seg-*"))


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
