"""Server-Sent Events, parsed line by line as the HTML standard says, and the reconnection
backoff."""

from __future__ import annotations

import random
from typing import List, NamedTuple, Optional


class Event(NamedTuple):
    event: str
    data: str
    id: Optional[str]


class Parser:
    """Feeds on the stream's lines (without their line ending); collects complete events."""

    def __init__(self, last_id: Optional[str] = None):
        self.last_id = last_id
        self.retry: Optional[int] = None
        self._event = ""
        self._data: List[str] = []

    def line(self, line: str) -> Optional[Event]:
        """One line; the event it completes, if any."""
        if line == "":
            if not self._data:
                self._event = ""
                return None
            event = Event(self._event or "message", "\n".join(self._data), self.last_id)
            self._event, self._data = "", []
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_id = value or None
        elif name == "retry":
            if value.isdigit():
                self.retry = int(value)
        return None


class Backoff:
    """Delays `initial`, `2·initial`, `4·initial`… capped at `maximum`, each drawn uniformly from
    the upper half of that step ("equal jitter"), so that many SDKs cut off by the same outage
    do not all come back at the same instant."""

    def __init__(self, initial: float, maximum: float):
        self.initial = max(initial, 0.001)
        self.maximum = max(maximum, self.initial)
        self.attempt = 0

    def next_delay(self) -> float:
        step = min(self.initial * (2 ** min(self.attempt, 30)), self.maximum)
        self.attempt += 1
        return step * random.uniform(0.5, 1.0)

    def set_initial(self, initial: float) -> None:
        self.initial = max(initial, 0.001)
        self.maximum = max(self.maximum, self.initial)

    def reset(self) -> None:
        self.attempt = 0
