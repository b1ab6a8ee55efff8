"""In-process fan-out of appended events to the sockets that follow their streams.

Each subscriber has a bounded queue. Publishing never waits: a subscriber whose queue is full is
marked overflowed and gets nothing more; its socket then closes and the client resumes from the
last position it saw (see `server.ws`). So a slow client costs the others nothing.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable

from masklog.domain.events import Event


class Overflowed(Exception):
    """The subscriber fell more than its queue behind; it must resume from the log."""


class Subscriber:
    def __init__(self, streams: frozenset[str], limit: int) -> None:
        self.streams = streams
        self.limit = limit
        self.overflowed = False
        self.closed = False
        self._queue: deque[Event] = deque()
        self._wake = asyncio.Event()

    def offer(self, event: Event) -> None:
        if self.overflowed or self.closed:
            return
        if len(self._queue) >= self.limit:
            self.overflowed = True
            self._queue.clear()
        else:
            self._queue.append(event)
        self._wake.set()

    async def next_batch(self) -> list[Event]:
        """Everything queued, waiting for at least one event; raises Overflowed, or returns []
        once closed."""
        while not self._queue:
            if self.overflowed:
                raise Overflowed()
            if self.closed:
                return []
            self._wake.clear()
            await self._wake.wait()
        batch = list(self._queue)
        self._queue.clear()
        return batch

    def close(self) -> None:
        self.closed = True
        self._wake.set()


class Hub:
    def __init__(self) -> None:
        self._by_stream: dict[str, set[Subscriber]] = {}
        self._listeners: list[Callable[[Event], None]] = []

    def listen(self, callback: Callable[[Event], None]) -> None:
        """Call `callback` with every published event of every stream, in order (the inference
        actor's feed). It must be quick and must not raise."""
        self._listeners.append(callback)

    def unlisten(self, callback: Callable[[Event], None]) -> None:
        self._listeners.remove(callback)

    def subscribe(self, streams: Iterable[str], limit: int) -> Subscriber:
        subscriber = Subscriber(frozenset(streams), limit)
        for stream in subscriber.streams:
            self._by_stream.setdefault(stream, set()).add(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        subscriber.close()
        for stream in subscriber.streams:
            followers = self._by_stream.get(stream)
            if followers is not None:
                followers.discard(subscriber)
                if not followers:
                    del self._by_stream[stream]

    def publish(self, event: Event) -> None:
        for subscriber in self._by_stream.get(event.stream, ()):
            subscriber.offer(event)
        for listener in self._listeners:
            listener(event)

    def drop_all(self) -> None:
        """Make every subscriber resume from the log (after the ledger rebuilt its state)."""
        for followers in self._by_stream.values():
            for subscriber in followers:
                subscriber.overflowed = True
                subscriber._wake.set()
