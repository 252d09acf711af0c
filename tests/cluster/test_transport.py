"""transport.py: the trio shell on real loopback sockets, on trio's autojumping mock clock.

Loopback datagrams and TCP handshakes complete inside the kernel before trio goes idle, so
the mock clock only jumps when nothing is in flight: protocol timeouts elapse in virtual
time and the assertions can name exact protocol instants without any real waiting.
"""

from __future__ import annotations

import trio
import trio.testing

from appliance.cluster.swim import codec, config, transport
from appliance.cluster.swim.codec import Ping
from appliance.cluster.swim.state import State


def node_config(name: str, **tags: str) -> config.SwimConfig:
    return config.lan(name, bind_addr="127.0.0.1", bind_port=0, tags=dict(tags))


async def wait_until(predicate, step: float = 0.01) -> float:  # noqa: ANN001
    while not predicate():
        await trio.sleep(step)
    return trio.current_time()


def test_join_gossip_crash_and_leave_over_loopback() -> None:
    result: dict[str, float] = {}

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            a = await nursery.start(transport.run, node_config("a", role="x"))
            b = await nursery.start(transport.run, node_config("b"))
            c = await nursery.start(transport.run, node_config("c"))
            events = a.subscribe()
            assert a.addr[0] == "127.0.0.1" and a.addr[1] > 0
            (res,) = await b.join([a.addr])
            assert res.ok
            (res,) = await c.join([b.addr])
            assert res.ok
            t0 = trio.current_time()
            await wait_until(lambda: all(len(x.members()) == 3 for x in (a, b, c)))
            result["converged"] = trio.current_time() - t0
            assert b.core.member("a").tags == {"role": "x"}

            a.update_tags({"role": "y"})
            await wait_until(lambda: c.core.member("a").tags == {"role": "y"})

            # A crash (no leave): the others declare it dead within the suspicion bounds.
            c.stop()
            t1 = trio.current_time()
            await wait_until(lambda: a.core.member("c").state == State.DEAD and b.core.member("c").state == State.DEAD)
            result["detect"] = trio.current_time() - t1

            # A graceful leave: left, and leave() returns once the news is out.
            await b.leave()
            await wait_until(lambda: a.core.member("b").state == State.LEFT)
            seen = []
            while True:
                try:
                    ev = events.receive_nowait()
                except trio.WouldBlock:
                    break
                seen.append((ev.name, ev.new))
            assert ("c", State.DEAD) in seen and ("b", State.LEFT) in seen
            a.stop()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    print(f"\nloopback on the mock clock: converged {result['converged']:.3f} s, crash detected {result['detect']:.2f} s")
    assert result["converged"] < 1.0
    # 3 members: k = 0 confirmations expected, so the timer is min = 4 s after the suspicion.
    assert 4.5 <= result["detect"] <= 12.0


def test_tcp_ping_and_garbage_over_real_sockets() -> None:
    async def main() -> None:
        async with trio.open_nursery() as nursery:
            a = await nursery.start(transport.run, node_config("a"))
            # TCP ping, exactly as memberlist's fallback sends it.
            stream = await trio.open_tcp_stream(*a.addr)
            async with stream:
                await stream.send_all(codec.encode_stream(Ping(9, "a")))
                reply = await transport.read_stream_message(stream)
            assert codec.decode_stream(reply) == codec.Ack(9)
            # Garbage on both sockets is counted and survived.
            udp = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_DGRAM)
            with udp:
                await udp.sendto(b"\x07\xff\xff", a.addr)
                await udp.sendto(b"", a.addr)
            stream = await trio.open_tcp_stream(*a.addr)
            async with stream:
                await stream.send_all(b"\x06\x81\xa5Nodes\xff")
                reply = await transport.read_stream_message(stream)
            assert isinstance(codec.decode_stream(reply), codec.ErrResp)
            await wait_until(lambda: a.core.stats.remote_errors >= 2)
            assert a.members()[0].state == State.ALIVE
            a.stop()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
