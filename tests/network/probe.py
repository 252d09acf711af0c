"""Client-side checks run inside a namespace: `nsenter --net=NS python -m tests.network.probe ...`.

    connect IP PORT [TIMEOUT]          a real TCP connect (and a read of what the server says)
    dns SERVER NAME [TYPE] [TIMEOUT]   one UDP query; prints rcode, addresses and how long it took
    udp IP PORT DATA [TIMEOUT]         send one datagram, print the reply
    dnstcp SERVER WAIT NAME...         A queries for NAMEs on one TCP connection (sent at once);
                                       prints the answers and when the server closed (within WAIT)

Prints one JSON object. Long-running servers (killed by the test):

    upstream IP PORT ANSWER            a DNS server answering every A query with ANSWER
    sink IP PORT                       a UDP socket that reads and never answers
    udpecho PORT                       echoes datagrams, prefixed with "echo:"
"""

from __future__ import annotations

import json
import socket
import sys
import time

from appliance.network import dnscodec


def _connect(ip: str, port: str, timeout: str = "2") -> dict:
    start = time.monotonic()
    try:
        with socket.create_connection((ip, int(port)), timeout=float(timeout)) as s:
            s.settimeout(float(timeout))
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            data = b""
            try:
                while chunk := s.recv(65536):
                    data += chunk
            except TimeoutError:
                pass
            return {"ok": True, "data": data.decode(errors="replace"), "elapsed": time.monotonic() - start}
    except OSError as exc:
        return {"ok": False, "error": type(exc).__name__, "errno": exc.errno, "elapsed": time.monotonic() - start}


def _dns(server: str, name: str, qtype: str = "A", timeout: str = "5") -> dict:
    host, _, port = server.partition(":")
    types = {"A": dnscodec.TYPE_A, "AAAA": dnscodec.TYPE_AAAA, "PTR": dnscodec.TYPE_PTR, "MX": dnscodec.TYPE_MX}
    start = time.monotonic()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(float(timeout))
        s.connect((host, int(port or 53)))
        s.send(dnscodec.query(4242, name, types[qtype]))
        try:
            ans = dnscodec.parse_answer(s.recv(4096))
        except TimeoutError:
            return {"timeout": True, "elapsed": time.monotonic() - start}
    return {"timeout": False, "rcode": ans.rcode, "id": ans.id, "addresses": [str(a) for a in ans.addresses()],
            "records": [(n, t, r.decode(errors="replace") if t == dnscodec.TYPE_PTR else r.hex()) for n, t, r in ans.records],
            "elapsed": time.monotonic() - start}


def _dnstcp(server: str, wait: str, *names: str) -> dict:
    host, _, port = server.partition(":")
    with socket.create_connection((host, int(port or 53)), timeout=5) as s:
        s.sendall(b"".join(dnscodec.frame(dnscodec.query(i, n)) for i, n in enumerate(names)))
        decoder, answers = dnscodec.StreamDecoder(), []
        while len(answers) < len(names):
            data = s.recv(65536)
            if not data:
                break
            decoder.feed(data)
            while (m := decoder.next_message()) is not None:
                a = dnscodec.parse_answer(m)
                answers.append({"id": a.id, "rcode": a.rcode, "tc": a.truncated,
                                "addresses": [str(x) for x in a.addresses()]})
        answered = time.monotonic()
        s.settimeout(float(wait))
        try:
            closed = s.recv(1) == b""
        except TimeoutError:
            closed = False
    return {"answers": answers, "closed_after": time.monotonic() - answered if closed else None}


def _udp(ip: str, port: str, data: str, timeout: str = "2") -> dict:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(float(timeout))
        s.sendto(data.encode(), (ip, int(port)))
        try:
            reply, _ = s.recvfrom(65536)
            return {"ok": True, "data": reply.decode(errors="replace")}
        except OSError as exc:
            return {"ok": False, "error": type(exc).__name__}


def _upstream(ip: str, port: str, answer: str) -> None:
    from ipaddress import IPv4Address

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, int(port)))
        while True:
            data, src = s.recvfrom(4096)
            q = dnscodec.parse_query(data)
            s.sendto(dnscodec.response(q, 0, [dnscodec.a_record(IPv4Address(answer), 5)]), src)


def _sink(ip: str, port: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((ip, int(port)))
        while True:
            s.recvfrom(4096)


def _udpecho(port: str) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("0.0.0.0", int(port)))
        while True:
            data, src = s.recvfrom(4096)
            s.sendto(b"echo:" + data, src)


if __name__ == "__main__":
    cmd, *args = sys.argv[1:]
    servers = {"upstream": _upstream, "sink": _sink, "udpecho": _udpecho}
    if cmd in servers:
        servers[cmd](*args)
    else:
        print(json.dumps({"connect": _connect, "dns": _dns, "udp": _udp, "dnstcp": _dnstcp}[cmd](*args)))
