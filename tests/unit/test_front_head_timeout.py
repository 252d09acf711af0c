"""api/front.py: a connection that never sends a request head is closed after the idle limit."""

import trio
import trio.testing

from appliance.api.front import Front


async def _never_called(*args):  # pragma: no cover - a head never arrives
    raise AssertionError("no request was expected")


def test_a_silent_connection_is_closed_after_the_idle_limit():
    async def main():
        front = Front(_never_called, _never_called)
        client, server = trio.testing.memory_stream_pair()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(front._connection, server)
            await client.send_all(b"GET /_ping HTTP/1.1\r\nHost: x\r\n")  # a head that never ends
            await trio.sleep(front._config.keep_alive_timeout - 1)
            with trio.move_on_after(0.5):
                assert await client.receive_some(1) != b""  # still open just before the limit
                raise AssertionError("the server answered a request it never got in full")
            with trio.fail_after(2):
                assert await client.receive_some(1) == b""  # closed at the limit

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
