"""network/rtnl.py's batching, bytes in / bytes out: several requests in one datagram, their acks
matched back by sequence number; and wiring's check of a batch's errnos."""

from __future__ import annotations

import errno
import struct

import pytest

from appliance.network import rtnl
from appliance.network.wiring import _check


def _ack(seq: int, code: int, request: bytes = b"\0" * 16) -> bytes:
    """What the kernel answers a request with NLM_F_ACK: NLMSG_ERROR, -errno, the request's header."""
    return rtnl.header(rtnl.NLMSG_ERROR, 0, seq, struct.pack("=i", -code) + request[:16])


def test_a_batch_is_the_requests_back_to_back_each_asking_for_an_ack():
    requests = [(rtnl.RTM_DELLINK, 0, rtnl.link_by_name("vaabc")),  # 21-byte attr: padded
                (rtnl.RTM_NEWLINK, rtnl.NLM_F_CREATE | rtnl.NLM_F_EXCL, rtnl.set_up(7)),
                (rtnl.RTM_NEWROUTE, rtnl.NLM_F_CREATE | rtnl.NLM_F_REPLACE, rtnl.default_route("10.1.0.1", 7))]
    data, seqs = rtnl.encode_batch(requests, 41)
    assert seqs == [41, 42, 43]
    msgs = list(rtnl.split_messages(data))
    assert [(kind, seq) for kind, _, seq, _ in msgs] == [(rtnl.RTM_DELLINK, 41), (rtnl.RTM_NEWLINK, 42),
                                                         (rtnl.RTM_NEWROUTE, 43)]
    for (kind, flags, body), (_, sent_flags, _, sent_body) in zip(requests, msgs, strict=True):
        assert sent_flags == flags | rtnl.NLM_F_REQUEST | rtnl.NLM_F_ACK
        assert sent_body == body
    offset = 0
    for _, _, _, body in msgs:  # every message starts 4-aligned; the lengths cover the bodies
        length = struct.unpack_from("=I", data, offset)[0]
        assert length == 16 + len(body) and offset % 4 == 0
        offset += (length + 3) & ~3
    assert offset == len(data)


def test_an_empty_batch_is_nothing():
    assert rtnl.encode_batch([], 1) == (b"", [])


def test_acks_are_matched_by_sequence_whatever_else_arrives():
    pending, results = {5, 6, 7}, {}
    reply = rtnl.header(rtnl.RTM_NEWLINK, 0, 6, rtnl.ifinfo(3) + rtnl.attr(rtnl.IFLA_IFNAME, b"eth0\0"))
    # a GET's answer before its ack, an ack of an older request, then two acks in one datagram
    rtnl.collect_acks(reply + _ack(2, 0) + _ack(6, 0), pending, results)
    assert pending == {5, 7} and results == {6: 0}
    rtnl.collect_acks(_ack(5, errno.ENODEV) + _ack(7, errno.EEXIST), pending, results)
    assert pending == set() and results == {5: errno.ENODEV, 6: 0, 7: errno.EEXIST}


def test_an_ack_counts_once():
    pending, results = {9}, {}
    rtnl.collect_acks(_ack(9, 0) + _ack(9, errno.EBUSY), pending, results)
    assert results == {9: 0} and pending == set()


def test_a_kernel_answering_a_batch_in_order_round_trips():
    requests = [(rtnl.RTM_NEWADDR, rtnl.NLM_F_CREATE, rtnl.new_addr(2, "10.0.0.2", 24)),
                (rtnl.RTM_NEWLINK, 0, rtnl.set_up(2))]
    data, seqs = rtnl.encode_batch(requests, 100)
    answers = {100: errno.EEXIST, 101: 0}
    kernel = b"".join(_ack(seq, answers[seq]) for _, _, seq, _ in rtnl.split_messages(data))
    pending, results = set(seqs), {}
    rtnl.collect_acks(kernel, pending, results)
    assert [results[s] for s in seqs] == [errno.EEXIST, 0]


def test_check_raises_the_first_errno_its_request_does_not_allow():
    _check([0, errno.ENODEV, errno.EEXIST], (0,), (0, errno.ENODEV), (0, errno.EEXIST))
    with pytest.raises(OSError) as exc:
        _check([errno.ENODEV, errno.EPERM, errno.EBUSY], (errno.ENODEV,), (0,), (0,))
    assert exc.value.errno == errno.EPERM
    with pytest.raises(ValueError):
        _check([0, 0], (0,))  # one allowance per request
