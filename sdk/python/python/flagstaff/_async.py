"""`AsyncClient`: the client for asyncio services. Starting and closing (network waits) run in a
worker thread so the event loop never blocks; reads are the client's own non-blocking calls."""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Callable, Optional

from ._client import Client, ConfigChange, Context, Evaluation, Status


class AsyncClient:
    """`async with flagstaff.AsyncClient(url, key, …) as client:` or
    `client = await flagstaff.AsyncClient.start(url, key, …)`; the options are `Client`'s."""

    def __init__(self, url: str, key: str, **options: Any):
        self._start = functools.partial(Client, url, key, **options)
        self._client: Optional[Client] = None

    @classmethod
    async def start(cls, url: str, key: str, **options: Any) -> "AsyncClient":
        """A started client (raises `NoSourceError` as `Client` does)."""
        client = cls(url, key, **options)
        await client._open()
        return client

    async def _open(self) -> None:
        if self._client is None:
            self._client = await asyncio.get_running_loop().run_in_executor(None, self._start)

    @property
    def client(self) -> Client:
        """The thread-based client underneath."""
        if self._client is None:
            raise RuntimeError("the AsyncClient is not started: use `async with` or `await AsyncClient.start(…)`")
        return self._client

    def bool_value(self, key: str, context: Optional[Context], default: bool) -> bool:
        return self.client.bool_value(key, context, default)

    def string_value(self, key: str, context: Optional[Context], default: str) -> str:
        return self.client.string_value(key, context, default)

    def number_value(self, key: str, context: Optional[Context], default: float) -> float:
        return self.client.number_value(key, context, default)

    def json_value(self, key: str, context: Optional[Context], default: Any) -> Any:
        return self.client.json_value(key, context, default)

    def evaluate(self, key: str, context: Optional[Context] = None) -> Evaluation:
        return self.client.evaluate(key, context)

    def all_flags(self, context: Optional[Context] = None):
        return self.client.all_flags(context)

    def status(self) -> Status:
        return self.client.status()

    def on_change(self, callback: Callable[[ConfigChange], Any]) -> Callable[[], None]:
        """Calls `callback(change)` on this event loop (a coroutine function is scheduled as a
        task) after each new configuration; returns a function that unsubscribes it."""
        loop = asyncio.get_running_loop()

        def deliver(change: ConfigChange) -> None:
            if asyncio.iscoroutinefunction(callback):
                loop.call_soon_threadsafe(lambda: loop.create_task(callback(change)))
            else:
                loop.call_soon_threadsafe(callback, change)

        return self.client.on_change(deliver)

    async def aclose(self) -> None:
        """Closes the client (sends the last counts, at most 2 s) off the event loop."""
        if self._client is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._client.close)

    async def __aenter__(self) -> "AsyncClient":
        await self._open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
