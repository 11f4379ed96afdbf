"""`flagstaff.AsyncClient` in an asyncio program: started and closed off the event loop, reads,
and a toggle delivered to a coroutine on the loop."""

import asyncio

import pytest

import flagstaff
from conftest import PATIENCE, free_port

ACME = {"targetingKey": "u-9", "email": "ada@acme.com"}


def test_the_async_client_reads_and_hears_of_changes_on_the_loop(make_setup):
    setup = make_setup()

    async def main():
        async with flagstaff.AsyncClient(setup.url, setup.key, send_events=False, poll_interval=3600,
                                         reconnect_backoff=(0.05, 0.4)) as client:
            assert client.bool_value("new-checkout", ACME, False) is True
            assert client.evaluate("banner", {"targetingKey": "u-2"}).variant == "b"
            loop = asyncio.get_running_loop()
            changes = asyncio.Queue()

            async def changed(change):
                assert asyncio.get_running_loop() is loop, "delivered on the loop"
                await changes.put(change)

            client.on_change(changed)
            while not client.status().stream_connected:
                await asyncio.sleep(0.01)
            await loop.run_in_executor(None, setup.toggle, "new-checkout", False)
            change = await asyncio.wait_for(changes.get(), PATIENCE)
            assert change.flags == ["new-checkout"]
            assert client.bool_value("new-checkout", ACME, True) is False
        assert not client.status().stream_connected, "closed"

        with pytest.raises(flagstaff.NoSourceError):
            await flagstaff.AsyncClient.start(f"http://127.0.0.1:{free_port()}", setup.key, timeout=1)
        with pytest.raises(RuntimeError, match="not started"):
            flagstaff.AsyncClient(setup.url, setup.key).bool_value("x", {}, False)

    asyncio.run(main())
