"""The client: how it starts, what it reads, how it stays current, what it tells.

Reads call the native engine on the configuration held (`self._engine`, replaced whole by one
assignment when a new bundle arrives): no lock, no I/O. Three daemon threads keep it current —
the stream, the updater (the only one that installs, so installs never race) and the event
sender — and are started again in a child process after `os.fork()` (gunicorn, uWSGI with
`py-call-osafterfork`), which inherits the configuration but not the threads.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import weakref
from datetime import datetime, timezone
from typing import Any, Callable, Dict, Iterable, List, Mapping, NamedTuple, Optional, Tuple

from . import _cache, _http
from ._native import Engine
from ._sse import Backoff, Parser

log = logging.getLogger("flagstaff")

#: The most counts `POST /sdk/v1/events` takes in one report.
MAX_EVENT_ENTRIES = 10_000
#: The largest count the server takes for one (flag, variant) in a report.
MAX_COUNT = 10**12
#: Longest line accepted on the stream.
MAX_STREAM_LINE = 1 << 20
#: How long `close()` waits for the last evaluation counts to be accepted.
FINAL_EVENTS_TIMEOUT = 2.0

Context = Mapping[str, Any]


class Evaluation(NamedTuple):
    """The result of `Client.evaluate`: the value and why it was served."""

    key: str
    #: The served value; `None` with an error.
    value: Any
    #: The served variation's key; `None` with an error.
    variant: Optional[str]
    #: `STATIC`, `DEFAULT`, `TARGETING_MATCH`, `SPLIT`, `DISABLED`, `PREREQUISITE_FAILED` or `ERROR`.
    reason: str
    #: `FLAG_NOT_FOUND` or `TARGETING_KEY_MISSING`, else `None`.
    error: Optional[str]
    #: The matched rule's id, when a rule with an id served the value.
    rule_id: Optional[str]
    #: The prerequisite that failed, with `PREREQUISITE_FAILED`.
    prerequisite: Optional[str]
    #: The version of the flag's state in the environment; 0 when unknown.
    version: int


class ConfigChange(NamedTuple):
    """Passed to `on_change` callbacks each time a new configuration is installed."""

    #: The environment's revision now held.
    revision: int
    #: The keys of the flags added, changed or removed, sorted.
    flags: List[str]
    #: Where it came from: `server <url>`.
    source: str


class Status(NamedTuple):
    """What the client holds and how it is connected, from `Client.status()`."""

    project: str
    environment: str
    revision: int
    etag: Optional[str]
    #: `server <url>` or `cache file <path>`.
    source: str
    #: When it was installed (Unix seconds).
    loaded_at: float
    flags: int
    #: Whether the change stream is connected (polling runs while it is not).
    stream_connected: bool
    #: False while no server can be reached (the configuration held may be stale).
    online: bool


class SourceAttempt(NamedTuple):
    """What one source answered when the client started."""

    source: str
    outcome: str

    def __str__(self) -> str:
        return f"{self.source}: {self.outcome}"


class NoSourceError(Exception):
    """Every source was tried and none gave a configuration; `attempts` says what each answered."""

    def __init__(self, attempts: List[SourceAttempt]):
        self.attempts = attempts
        super().__init__("no source gave a configuration: " + "; ".join(map(str, attempts)))


class _Notice(NamedTuple):
    """From the stream thread to the updater: the server is at this revision (or, with
    `check`, the stream was lost: see whether the servers still answer)."""

    endpoint: Optional[int]
    revision: Optional[int]
    etag: Optional[str]
    check: bool = False


_STOP = object()


def _rfc3339(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Client:
    """A Flagstaff client for one environment, read with a server key (`fs_srv_…`).

    The constructor returns once a configuration is loaded from the first source that gives one
    — `url`, then each of `fallback_urls`, then `cache_file` — within `timeout` seconds for the
    servers, and raises `NoSourceError` when none does. Reads never raise and never wait on the
    network. Call `close()` (or use the client as a context manager) to stop the background
    threads and send the last evaluation counts.
    """

    def __init__(
        self,
        url: str,
        key: str,
        *,
        fallback_urls: Iterable[str] = (),
        cache_file: Optional[str] = None,
        timeout: float = 5.0,
        poll_interval: float = 60.0,
        stream: bool = True,
        stream_url: Optional[str] = None,
        request_timeout: float = 10.0,
        stream_idle_timeout: float = 45.0,
        reconnect_backoff: Optional[Tuple[float, float]] = None,
        send_events: bool = True,
        events_interval: float = 60.0,
        max_event_entries: int = MAX_EVENT_ENTRIES,
    ):
        self._endpoints = [_http.Endpoint(u) for u in [url, *fallback_urls]]
        self._stream_endpoint = _http.Endpoint(stream_url) if stream_url is not None else None
        if not isinstance(key, str) or not key.strip():
            raise ValueError("invalid server key: it is empty")
        key = key.strip()
        if any(c in key for c in "\r\n\0"):
            raise ValueError("invalid server key: it holds characters not allowed in an HTTP header")
        self._auth = f"Bearer {key}"
        self._fingerprint = _cache.key_fingerprint(key)
        self._cache_file = os.fspath(cache_file) if cache_file is not None else None
        self._init_timeout = float(timeout)
        self._poll_interval = max(float(poll_interval), 0.01)
        self._stream = bool(stream)
        self._request_timeout = max(float(request_timeout), 0.01)
        self._stream_idle_timeout = max(float(stream_idle_timeout), 0.01)
        self._reconnect = reconnect_backoff or (1.0, 30.0)
        self._reconnect_configured = reconnect_backoff is not None
        self._send_events = bool(send_events)
        self._events_interval = max(float(events_interval), 0.01)
        self._max_event_entries = min(int(max_event_entries), MAX_EVENT_ENTRIES)

        self._listeners: List[Callable[[ConfigChange], None]] = []
        self._status_listeners: List[Callable[[bool], None]] = []
        self._closed = False
        self._init_state()

        engine, etag, source, raw = self._load()
        self._engine: Engine = engine
        self._etag: Optional[str] = etag
        self._source = source
        self._from_server = raw is not None
        self._loaded_at = time.time()
        self._online = raw is not None
        self._failing = raw is None
        log.info(
            "Flagstaff client ready: %s/%s revision %d, %d flags, from %s",
            engine.project, engine.environment, engine.revision, len(engine), source,
        )
        if raw is not None:
            self._save_cache(etag, raw)
        _live_clients.add(self)
        self._start()

    # ----- reads: lock-free, no I/O, never raise -----

    def bool_value(self, key: str, context: Optional[Context], default: bool) -> bool:
        """The boolean value of `key` for `context`; `default` when the flag is unknown, not
        boolean, or cannot be evaluated for this context."""
        return self._engine.bool_value(key, context, default)

    def string_value(self, key: str, context: Optional[Context], default: str) -> str:
        """The string value of `key` for `context`, or `default`."""
        return self._engine.string_value(key, context, default)

    def number_value(self, key: str, context: Optional[Context], default: float) -> float:
        """The number value of `key` for `context` (as a float), or `default`."""
        return self._engine.number_value(key, context, default)

    def json_value(self, key: str, context: Optional[Context], default: Any) -> Any:
        """The value of `key` for `context` whatever its type (for `json` flags and configs; a
        new object each call), or `default`."""
        return self._engine.json_value(key, context, default)

    def evaluate(self, key: str, context: Optional[Context] = None) -> Evaluation:
        """The full result for `key`: value, variant, reason, error and metadata."""
        if not isinstance(key, str):
            return Evaluation(repr(key), None, None, "ERROR", "FLAG_NOT_FOUND", None, None, 0)
        return Evaluation(key, *self._engine.evaluate(key, context))

    def all_flags(self, context: Optional[Context] = None) -> Dict[str, Evaluation]:
        """Every flag and config evaluated for `context`, by key in key order (e.g. to bootstrap
        a page). These evaluations are not counted as uses of the flags."""
        return {item[0]: Evaluation(*item) for item in self._engine.evaluate_all(context)}

    def flag_keys(self) -> List[str]:
        """The keys of every flag and config, sorted."""
        return self._engine.flag_keys()

    def status(self) -> Status:
        """What the client holds and how it is connected."""
        engine = self._engine
        return Status(
            engine.project, engine.environment, engine.revision, self._etag, self._source,
            self._loaded_at, len(engine), self._stream_connected, self._online,
        )

    # ----- notifications -----

    def on_change(self, callback: Callable[[ConfigChange], None]) -> Callable[[], None]:
        """Calls `callback(change)` from a background thread after each new configuration is
        installed; returns a function that unsubscribes it. An exception in it is logged."""
        self._listeners.append(callback)

        def unsubscribe() -> None:
            try:
                self._listeners.remove(callback)
            except ValueError:
                pass

        return unsubscribe

    def on_status(self, callback: Callable[[bool], None]) -> Callable[[], None]:
        """Calls `callback(online)` when the client loses every server (`False`: the
        configuration held may be stale) and when one answers again (`True`)."""
        self._status_listeners.append(callback)

        def unsubscribe() -> None:
            try:
                self._status_listeners.remove(callback)
            except ValueError:
                pass

        return unsubscribe

    # ----- life cycle -----

    def close(self) -> None:
        """Stops the background threads after sending the evaluation counts not yet sent
        (waiting at most 2 s for the server). Reads keep working on the last configuration.
        Calling it again does nothing."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        _live_clients.discard(self)
        self._stop.set()
        self._notices.put(_STOP)
        self._drop_stream(shutdown=True)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self._stream_connected = False
        if self._send_events:
            self._send_counts(FINAL_EVENTS_TIMEOUT, final=True)

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        engine = self._engine
        return f"<flagstaff.Client {engine.project}/{engine.environment} revision {engine.revision}>"

    # ----- start -----

    def _init_state(self) -> None:
        """The per-process state of the background work (again in a forked child)."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._notices: "queue.Queue[object]" = queue.Queue()
        self._stream_connected = False
        self._stream_conn: Any = None
        self._threads: List[threading.Thread] = []
        self._failing = False
        self._pending: Dict[Tuple[str, str], int] = {}
        self._pending_start = time.time()
        self._retired: List[List[Any]] = []
        self._pid = os.getpid()

    def _load(self) -> Tuple[Engine, Optional[str], str, Optional[bytes]]:
        attempts: List[SourceAttempt] = []
        deadline = time.monotonic() + self._init_timeout
        count = len(self._endpoints)
        for i, endpoint in enumerate(self._endpoints):
            source = f"server {endpoint.base}"
            left = deadline - time.monotonic()
            if left <= 0:
                attempts.append(SourceAttempt(source, "not tried: the init timeout was used up"))
                continue
            try:
                raw, etag = _http.fetch_bundle(endpoint, self._auth, None, left / (count - i))
                assert raw is not None
                engine = Engine.from_bytes(raw)
            except (_http.RequestError, ValueError) as e:
                attempts.append(SourceAttempt(source, str(e)))
                continue
            self._warn_attempts(attempts)
            return engine, etag, source, raw
        if self._cache_file is not None:
            source = f"cache file {self._cache_file}"
            try:
                raw, etag = _cache.read(self._cache_file, self._fingerprint)
                engine = Engine.from_bytes(raw)
            except (_cache.CacheError, ValueError) as e:
                attempts.append(SourceAttempt(source, str(e)))
            else:
                self._warn_attempts(attempts)
                return engine, etag, source, None
        raise NoSourceError(attempts)

    @staticmethod
    def _warn_attempts(attempts: List[SourceAttempt]) -> None:
        for attempt in attempts:
            log.warning("Flagstaff configuration source failed: %s", attempt)

    def _start(self) -> None:
        targets = [self._run_updates]
        if self._stream:
            targets.append(self._run_stream)
        if self._send_events:
            targets.append(self._run_events)
        for target in targets:
            thread = threading.Thread(target=target, name=f"flagstaff-{target.__name__[5:]}", daemon=True)
            self._threads.append(thread)
            thread.start()

    def _after_fork_in_child(self) -> None:
        """In a child of `os.fork()`: the parent's threads are not here, its locks may have
        been held at the fork, its stream socket is the parent's. Start afresh on the same
        configuration; the counts so far are the parent's to send."""
        if self._closed:
            return
        inherited, failing = self._retired, self._failing
        if self._stream_conn is not None:
            # The parent's stream connection: a shutdown would cut the parent's too, and its
            # buffered reader's lock may have been held by the parent's stream thread at the
            # fork, so closing it here (or letting it be collected) could wait forever. Keep it,
            # untouched, for the life of this process.
            _inherited_connections.append(self._stream_conn)
        self._init_state()
        self._failing = failing
        for engine in [self._engine, *(entry[0] for entry in inherited)]:
            engine.drain_counts()
        self._start()

    # ----- installing a configuration -----

    def _install(self, engine: Engine, etag: Optional[str], source: str, raw: bytes) -> None:
        old = self._engine
        change = ConfigChange(engine.revision, engine.changed_since(old), source)
        self._etag = etag
        self._source = source
        self._from_server = True
        self._loaded_at = time.time()
        self._engine = engine
        with self._lock:
            # Reads that loaded `old` just before the swap may still count on it.
            self._retired.append([old, 0])
        log.debug("Flagstaff configuration updated: revision %d, %d flags changed", change.revision, len(change.flags))
        self._save_cache(etag, raw)
        if not change.flags and change.revision == old.revision:
            return  # the same configuration from another source (a server after the cache file)
        for callback in list(self._listeners):
            try:
                callback(change)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the updates
                log.exception("a Flagstaff on_change callback failed")

    def _save_cache(self, etag: Optional[str], raw: bytes) -> None:
        if self._cache_file is None:
            return
        try:
            _cache.write(self._cache_file, self._fingerprint, etag, raw)
        except OSError as e:
            log.warning("cannot write the Flagstaff cache file %s: %s", self._cache_file, e)

    def _set_online(self) -> None:
        online = self._stream_connected or not self._failing
        if online == self._online:
            return
        self._online = online
        if online:
            log.info("a Flagstaff server answers again")
        for callback in list(self._status_listeners):
            try:
                callback(online)
            except Exception:  # noqa: BLE001
                log.exception("a Flagstaff on_status callback failed")

    # ----- the updater thread -----

    def _run_updates(self) -> None:
        poll = self._poll_interval
        next_poll = time.monotonic() + poll
        # A revision announced by the stream but not fetched is retried soon, with backoff,
        # rather than at the next poll: polling is off while the stream is up.
        retry = Backoff(self._reconnect[0], poll)
        retry_at: Optional[float] = None
        notices = self._notices
        while True:
            due = next_poll if retry_at is None else min(next_poll, retry_at)
            try:
                notice = notices.get(timeout=max(0.0, due - time.monotonic()))
            except queue.Empty:
                notice = None
            if notice is _STOP or self._stop.is_set():
                return
            preferred: Optional[int] = None
            if isinstance(notice, _Notice):
                if not notice.check:
                    if notice.etag is not None and self._etag is not None:
                        known = notice.etag == self._etag
                    else:
                        known = notice.revision is not None and notice.revision == self._engine.revision
                    if known:
                        continue
                    preferred = notice.endpoint
            else:
                now = time.monotonic()
                if retry_at is not None and now >= retry_at:
                    pass
                elif now >= next_poll:
                    next_poll = now + poll
                    if self._stream_connected and retry_at is None:
                        continue
                else:
                    continue
            if self._refresh(preferred):
                retry.reset()
                retry_at = None
            elif self._stream_connected:
                retry_at = time.monotonic() + retry.next_delay()
            else:
                retry_at = None  # polling takes over

    def _refresh(self, preferred: Optional[int]) -> bool:
        """Fetches the bundle (conditionally) from `preferred`, then the other servers in order,
        and installs it when it is new. False when no server gave it."""
        order = ([preferred] if preferred is not None else []) + [
            i for i in range(len(self._endpoints)) if i != preferred
        ]
        errors = []
        for i in order:
            if self._stop.is_set():
                return False
            endpoint = self._endpoints[i]
            held = self._etag if self._from_server else None
            try:
                raw, etag = _http.fetch_bundle(endpoint, self._auth, held, self._request_timeout)
                if raw is not None and not (etag is not None and etag == held):
                    self._install(Engine.from_bytes(raw), etag, f"server {endpoint.base}", raw)
            except (_http.RequestError, ValueError) as e:
                errors.append(f"{endpoint.base}: {e}")
                continue
            if self._failing:
                self._failing = False
            self._set_online()
            return True
        (log.debug if self._failing else log.warning)(
            "no Flagstaff server gave the configuration; keeping the one held: %s", "; ".join(errors)
        )
        self._failing = True
        self._set_online()
        return False

    # ----- the stream thread -----

    def _run_stream(self) -> None:
        if self._stream_endpoint is not None:
            endpoints = [(self._stream_endpoint, None)]
        else:
            endpoints = [(e, i) for i, e in enumerate(self._endpoints)]
        backoff = Backoff(*self._reconnect)
        which = 0
        quiet = False
        while not self._stop.is_set():
            endpoint, index = endpoints[which]
            opened, why = self._listen(endpoint, index, backoff)
            was_connected = self._stream_connected
            self._stream_connected = False
            if self._stop.is_set():
                return
            if opened:
                log.info("Flagstaff stream from %s ended (%s); reconnecting", endpoint.base, why)
                quiet = False
                if was_connected:
                    # Does any server still answer? (Tells `on_status` soon, not at the next poll.)
                    self._notices.put(_Notice(None, None, None, check=True))
            else:
                (log.debug if quiet else log.warning)(
                    "Flagstaff stream from %s unavailable (%s); polling meanwhile", endpoint.base, why
                )
                quiet = True
                which = (which + 1) % len(endpoints)
            self._set_online()
            if self._stop.wait(backoff.next_delay()):
                return

    def _listen(self, endpoint: _http.Endpoint, index: Optional[int], backoff: Backoff) -> Tuple[bool, str]:
        """One stream connection: reads events until it ends. `(opened, why it ended)`."""
        # Name the revision held, so the server skips the catch-up event when nothing is new.
        # Only a configuration a server gave counts: a cache file's may come from elsewhere.
        held = str(self._engine.revision) if self._from_server else None
        try:
            conn, response = _http.open_stream(endpoint, self._auth, held, self._request_timeout)
        except _http.RequestError as e:
            return False, str(e)
        with self._lock:
            if self._stop.is_set():
                conn.close()
                return True, "the client is closing"
            self._stream_conn = conn
        try:
            if conn.sock is not None:
                conn.sock.settimeout(self._stream_idle_timeout)
            backoff.reset()
            self._stream_connected = True
            self._set_online()
            parser = Parser(held)
            while True:
                try:
                    line = response.readline(MAX_STREAM_LINE + 1)
                except (TimeoutError, OSError) as e:
                    if self._stop.is_set():
                        return True, "the client is closing"
                    if "timed out" in str(e) or isinstance(e, TimeoutError):
                        return True, f"nothing received for {self._stream_idle_timeout:g} s"
                    return True, str(e) or type(e).__name__
                except Exception as e:  # noqa: BLE001 - http.client's own errors
                    return True, str(e) or type(e).__name__
                if not line:
                    return True, "closed by the server"
                if len(line) > MAX_STREAM_LINE:
                    return True, f"a line longer than {MAX_STREAM_LINE} bytes"
                event = parser.line(line.decode("utf-8", "replace").rstrip("\r\n"))
                if parser.retry is not None:
                    if not self._reconnect_configured:
                        backoff.set_initial(parser.retry / 1000)
                    parser.retry = None
                if event is None:
                    continue
                try:
                    message = json.loads(event.data)
                    revision = message.get("revision")
                    etag = message.get("etag")
                except (ValueError, AttributeError):
                    log.debug("ignoring a stream event that is not a revision: %r", event.data[:100])
                    continue
                self._notices.put(
                    _Notice(
                        index,
                        revision if isinstance(revision, int) else None,
                        etag if isinstance(etag, str) else None,
                    )
                )
        finally:
            self._drop_stream(shutdown=False)

    def _drop_stream(self, shutdown: bool) -> None:
        with self._lock:
            conn, self._stream_conn = self._stream_conn, None
        if conn is None:
            return
        if shutdown and conn.sock is not None:
            # Wakes the stream thread blocked in a read.
            try:
                import socket

                conn.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        conn.close()

    # ----- the event thread -----

    def _run_events(self) -> None:
        while not self._stop.wait(self._events_interval):
            self._send_counts(self._request_timeout)

    def _gather(self) -> None:
        """Moves the counts of the current and retired configurations into the pending table."""
        with self._lock:
            pending = self._pending
            engines = [self._engine, *(entry[0] for entry in self._retired)]
            for entry in self._retired:
                entry[1] += 1
            # A configuration retired two gathers ago gets no more counts.
            self._retired = [entry for entry in self._retired if entry[1] < 2]
            for engine in engines:
                for flag, variant, n in engine.drain_counts():
                    self._add(pending, flag, variant, n)

    def _add(self, pending: Dict[Tuple[str, str], int], flag: str, variant: str, n: int) -> None:
        if (flag, variant) in pending:
            pending[(flag, variant)] += n
        elif len(pending) < self._max_event_entries:
            pending[(flag, variant)] = n
        else:
            log.warning(
                "%d evaluation counts dropped: more than %d distinct (flag, variant) pairs between sends",
                n, self._max_event_entries,
            )

    def _send_counts(self, timeout: float, final: bool = False) -> None:
        """Sends what was counted since the last accepted report; keeps it for next time on
        failure."""
        self._gather()
        with self._lock:
            now = time.time()
            taken, start = self._pending, self._pending_start
            self._pending, self._pending_start = {}, now
        if not taken:
            return
        report = {
            "start": _rfc3339(start),
            "end": _rfc3339(now),
            "counts": [
                {"flag": flag, "variant": variant, "count": min(count, MAX_COUNT)}
                for (flag, variant), count in sorted(taken.items())
            ],
        }
        body = json.dumps(report).encode()
        errors = []
        deadline = time.monotonic() + timeout
        for endpoint in self._endpoints:
            left = deadline - time.monotonic() if final else timeout
            if left <= 0:
                break
            try:
                _http.post_events(endpoint, self._auth, body, left)
                return
            except _http.RequestError as e:
                status = getattr(e, "status", None)
                if status is not None and 400 <= status < 500 and status not in (408, 429):
                    # Sending the same report again would be refused again.
                    log.error("evaluation counts refused by %s; dropped: %s", endpoint.base, e)
                    return
                errors.append(f"{endpoint.base}: {e}")
        log.warning("evaluation counts not sent; keeping them for the next attempt: %s", "; ".join(errors))
        with self._lock:
            self._pending_start = min(self._pending_start, start)
            for (flag, variant), n in taken.items():
                self._add(self._pending, flag, variant, n)


#: Stream connections inherited from a parent process, never to be touched (see above).
_inherited_connections: List[Any] = []

#: Clients whose background threads run, to restart them in a forked child and to send their
#: last counts at interpreter exit.
_live_clients: "weakref.WeakSet[Client]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for client in list(_live_clients):
        try:
            client._after_fork_in_child()
        except Exception:  # noqa: BLE001 - never break the child's start
            log.exception("restarting a Flagstaff client after fork failed")


def _close_all_at_exit() -> None:
    for client in list(_live_clients):
        try:
            client.close()
        except Exception:  # noqa: BLE001
            log.exception("closing a Flagstaff client at exit failed")


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

import atexit  # noqa: E402 - next to what it registers

atexit.register(_close_all_at_exit)
