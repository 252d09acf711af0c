"""k8s-file parsing (P/F joining), Docker `logs` selection, timestamps, and the follower."""

from contextlib import aclosing

import pytest
import trio

from appliance.runtime.logfile import (
    LogEntry,
    LogFollower,
    LogReader,
    parse_log,
    select,
)
from appliance.runtime.timestamps import format_rfc3339nano, parse_rfc3339nano

# Real conmon output shapes (conmon-notes.md §1).
LOG = (
    b"2026-11-27T22:51:34.896867936+00:00 stdout F out-line-1\n"
    b"2026-11-27T22:51:34.896867936+00:00 stdout P partial-no-newline\n"
    b"2026-11-27T22:51:34.896941916+00:00 stderr F err-line-1\n"
    b"2026-11-27T22:51:35.198839126+00:00 stdout F  rest\n"
    b"2026-11-27T22:51:35.503766901+00:00 stdout F \n"
)
T0 = 1795819894_896867936


def test_parse_joins_partials_per_stream_and_restores_newlines():
    entries = parse_log(LOG)
    assert [(e.stream, e.data) for e in entries] == [
        ("stdout", b"out-line-1\n"),
        ("stderr", b"err-line-1\n"),
        ("stdout", b"partial-no-newline rest\n"),
        ("stdout", b"\n"),
    ]
    assert entries[0].timestamp == "2026-11-27T22:51:34.896867936+00:00"
    assert entries[0].time_ns == T0
    assert entries[2].time_ns == T0  # a joined line keeps its first fragment's time


def test_long_line_split_into_p_p_f():
    chunks = [b"x" * 8192, b"y" * 8192, b"z" * 3616]
    data = b"".join(b"2026-11-27T22:51:35.503766901+00:00 stdout %s %s\n" % (tag, c)
                    for tag, c in zip((b"P", b"P", b"F"), chunks))
    [entry] = parse_log(data)
    assert entry.data == b"".join(chunks) + b"\n" and len(entry.data) == 20001


def test_feed_in_arbitrary_pieces_gives_the_same_entries():
    reader = LogReader()
    out = []
    for i in range(len(LOG)):
        out += reader.feed(LOG[i:i + 1])
    out += reader.finish()
    assert out == parse_log(LOG)


def test_unfinished_partial_is_flushed_at_finish_without_newline():
    reader = LogReader()
    assert reader.feed(b"2026-11-27T22:51:34.1+00:00 stdout P abc\n") == []
    assert reader.finish() == [LogEntry("2026-11-27T22:51:34.1+00:00", 1795819894_100000000,
                                        "stdout", b"abc")]


def test_tty_lines_keep_carriage_return_and_bytes_are_not_decoded():
    [e] = parse_log(b"2026-11-27T22:51:34.896867936+00:00 stdout F \xff/dev/pts/0\r\n")
    assert e.data == b"\xff/dev/pts/0\r\n"


def test_garbage_records_are_skipped():
    assert parse_log(b"garbage\n\nnot-a-time stdout F x\n2026-11-27T22:51:34Z other F x\n") == []


def entries_at(*seconds_and_streams):
    return [LogEntry("", int(s * 1e9), stream, f"{s}\n".encode()) for s, stream in seconds_and_streams]


def test_select_tail_since_until_streams():
    es = entries_at((10, "stdout"), (11, "stderr"), (12, "stdout"), (13, "stderr"), (14, "stdout"))
    assert select(es) == es
    assert select(es, tail=2) == es[3:]
    assert select(es, tail=0) == []
    assert select(es, tail=100) == es
    assert select(es, since=12) == es[2:]           # inclusive
    assert select(es, until=12) == es[:3]           # inclusive
    assert select(es, since=11, until=13) == es[1:4]
    assert select(es, stderr=False) == [es[0], es[2], es[4]]
    assert select(es, stdout=False, tail=2) == [es[3]]  # tail counts both streams, like dockerd


@pytest.mark.parametrize("text,ns", [
    ("2026-11-27T22:51:34.896867936+00:00", T0),
    ("2026-11-27T22:51:34.896867936Z", T0),
    ("2026-11-27T23:51:34.896867936+01:00", T0),
    ("2026-11-27T21:21:34.896867936-01:30", T0),
    ("2026-11-27T22:51:34Z", 1795819894_000000000),
    ("1970-01-01T00:00:00.5Z", 500_000_000),
])
def test_parse_rfc3339nano(text, ns):
    assert parse_rfc3339nano(text) == ns


def test_parse_rfc3339nano_rejects_junk():
    with pytest.raises(ValueError):
        parse_rfc3339nano("yesterday")


def test_format_rfc3339nano():
    assert format_rfc3339nano(T0) == "2026-11-27T22:51:34.896867936Z"
    assert format_rfc3339nano(1795819894_500000000) == "2026-11-27T22:51:34.5Z"
    assert format_rfc3339nano(1795819894_000000000) == "2026-11-27T22:51:34Z"
    assert format_rfc3339nano(1795819894_500000000, fixed=True) == "2026-11-27T22:51:34.500000000Z"
    assert parse_rfc3339nano(format_rfc3339nano(T0)) == T0


def test_follower_reads_growth_and_stops_when_exited_and_drained(tmp_path):
    path = tmp_path / "ctr.log"
    path.write_bytes(LOG[:LOG.index(b"2026-11-27T22:51:34.896941916")])

    async def main():
        follower = LogFollower(path, poll_interval=0.01)
        first = await follower.read_available()
        assert [e.data for e in first] == [b"out-line-1\n"]  # the P line waits for its F
        exited = trio.Event()
        got = []

        async def writer():
            with path.open("ab") as f:
                rest = LOG[len(path.read_bytes()):]
                f.write(rest[:30])  # a torn record: nothing may come out of it yet
                f.flush()
                await trio.sleep(0.05)
                f.write(rest[30:])
                f.write(b"2026-11-27T22:51:36.0+00:00 stderr P no-newline-at-exit\n")
            exited.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            async with aclosing(follower.follow(exited)) as entries:
                async for entry in entries:
                    got.append(entry)
        assert [(e.stream, e.data) for e in got] == [
            ("stderr", b"err-line-1\n"), ("stdout", b"partial-no-newline rest\n"),
            ("stdout", b"\n"), ("stderr", b"no-newline-at-exit")]

    trio.run(main)


def test_follower_of_missing_file_ends_when_exited(tmp_path):
    async def main():
        exited = trio.Event()
        exited.set()
        async with aclosing(LogFollower(tmp_path / "none").follow(exited)) as entries:
            assert [e async for e in entries] == []

    trio.run(main)


def test_select_since_until_survive_float_seconds_at_todays_epoch():
    """`docker logs --since <a -t stamp>` must include the stamped entry although the bound
    travels as float seconds (about 0.5 us of precision in 2026)."""
    for ns in (1795826330_031839716, 1795827347_158912936, 1795827347_158912999, 1795827347_158913000):
        es = [LogEntry("", ns - 1500, "stdout", b"before\n"), LogEntry("", ns, "stdout", b"at\n"),
              LogEntry("", ns + 1500, "stdout", b"after\n")]
        assert [e.data for e in select(es, since=ns / 1e9)] == [b"at\n", b"after\n"], ns
        assert [e.data for e in select(es, until=ns / 1e9)] == [b"before\n", b"at\n"], ns
