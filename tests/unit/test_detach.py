"""The detach-key scanner: moby/term's escape proxy as bytes in, bytes out."""

import pytest

from appliance.engine.detach import DEFAULT_DETACH_KEYS, DetachScanner, parse_detach_keys
from appliance.errors import InvalidParameter


@pytest.mark.parametrize("text, keys", [
    ("", b"\x10\x11"),
    ("ctrl-p,ctrl-q", b"\x10\x11"),
    ("ctrl-a,a", b"\x01a"),
    ("ctrl-@,ctrl-[,ctrl-\\,ctrl-],ctrl-^,ctrl-_", bytes([0, 27, 28, 29, 30, 31])),
    ("x", b"x"),
    ("DEL,ctrl-z", b"\x7f\x1a"),
])
def test_parse_matches_moby_term(text, keys):
    assert parse_detach_keys(text) == keys


@pytest.mark.parametrize("text", ["ctrl-", "ctrl-A", "foo", "ctrl-p,,ctrl-q", "ctrl-1", ",", "\u00e9"])
def test_unknown_keys_get_dockers_message(text):
    with pytest.raises(InvalidParameter) as err:
        parse_detach_keys(text)
    assert err.value.message == f"Invalid detach keys ({text}) provided"


def test_default_sequence_in_one_chunk_passes_what_came_before_and_drops_the_rest():
    s = DetachScanner()
    assert s.feed(b"ls\r\x10\x11echo lost\r") == b"ls\r"
    assert s.detached
    assert s.feed(b"more") == b""


def test_sequence_split_over_chunks_is_held_back_then_detaches():
    s = DetachScanner()
    assert s.feed(b"ab\x10") == b"ab"
    assert s.pending == b"\x10" and not s.detached
    assert s.feed(b"\x11") == b""
    assert s.detached


def test_a_partial_match_is_flushed_before_the_byte_that_breaks_it():
    s = DetachScanner()
    assert s.feed(b"\x10") == b""
    assert s.feed(b"x") == b"\x10x"
    assert not s.detached and s.pending == b""


def test_the_breaking_byte_is_not_rechecked_as_a_new_start_as_in_moby():
    s = DetachScanner()
    # ctrl-p ctrl-p ctrl-q: the second ctrl-p breaks the match and is passed through; the
    # ctrl-q that follows no longer continues anything.
    assert s.feed(b"\x10\x10\x11") == b"\x10\x10\x11"
    assert not s.detached


def test_longer_custom_sequence_across_many_chunks():
    keys = parse_detach_keys("ctrl-a,b,c")
    s = DetachScanner(keys)
    out = b"".join(s.feed(bytes([c])) for c in b"xy\x01bz\x01b")
    assert out == b"xy\x01bz" and s.pending == b"\x01b"
    assert s.feed(b"c") == b""
    assert s.detached


def test_single_key_sequence():
    s = DetachScanner(b"q")
    assert s.feed(b"abc") == b"abc"
    assert s.feed(b"zzqzz") == b"zz"
    assert s.detached


def test_no_keys_is_a_programming_error():
    with pytest.raises(ValueError):
        DetachScanner(b"")
    assert DetachScanner().keys == DEFAULT_DETACH_KEYS
