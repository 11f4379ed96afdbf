"""The client against the real server: a toggle reaches it over the stream; it tries its sources
in order and says what each answered; it starts from its cache file while the server is down
and catches up; it resumes after the server is killed and restarted; polling delivers while the
stream is blocked; its counts reach the server."""

import json
import queue
import threading

import pytest

import flagstaff
from conftest import PATIENCE, BlackHole, eventually, free_port


def cached_revision(path):
    with open(path) as f:
        return json.load(f)["bundle"]["revision"]


ACME = {"targetingKey": "u-9", "email": "ada@acme.com", "plan": "pro"}
OTHER = {"targetingKey": "u-2", "email": "bob@example.com"}


def test_a_toggle_through_the_api_reaches_the_sdk_over_the_stream(make_setup):
    setup = make_setup()
    # Polling once an hour: only the stream can deliver within this test.
    client = setup.client(poll_interval=3600, cache_file=setup.cache_path)
    status = client.status()
    assert (status.project, status.environment, status.flags) == ("shop", "production", 6)
    assert status.source == f"server {setup.url}"
    assert cached_revision(setup.cache_path) == status.revision, "the bundle is written to the cache file"

    assert client.bool_value("new-checkout", ACME, False) is True
    assert client.bool_value("new-checkout", OTHER, True) is False
    assert client.string_value("banner", OTHER, "x") == "Welcome back ✓"
    assert client.string_value("banner", ACME, "x") == 'Hello, "world" <script>\t'
    assert client.number_value("max-items", ACME, 0.0) == 2.5
    assert client.number_value("max-items", OTHER, 0.0) == 10.0
    assert client.json_value("theme", OTHER, None) == {"bg": "#000", "size": 3}
    # Wrong type, unknown flag, odd arguments: the default, never an exception.
    assert client.string_value("new-checkout", ACME, "default") == "default"
    assert client.bool_value("no-such-flag", ACME, True) is True
    assert client.bool_value(None, None, True) is True
    assert client.number_value("banner", "not a dict", 1.5) == 1.5
    detail = client.evaluate("gated", OTHER)
    assert (detail.value, detail.variant, detail.reason, detail.prerequisite) == (False, "off", "PREREQUISITE_FAILED", "new-checkout")
    assert client.evaluate("half", {}).error == "TARGETING_KEY_MISSING"
    assert client.evaluate("nope", ACME) == flagstaff.Evaluation("nope", None, None, "ERROR", "FLAG_NOT_FOUND", None, None, 0)
    detail = client.evaluate("new-checkout", ACME)
    assert (detail.variant, detail.reason, detail.rule_id) == ("on", "TARGETING_MATCH", "beta")
    everything = client.all_flags(ACME)
    assert list(everything) == ["banner", "gated", "half", "max-items", "new-checkout", "theme"]
    assert everything["new-checkout"] == detail

    eventually("the stream connects", lambda: client.status().stream_connected)
    changes = queue.Queue()
    client.on_change(changes.put)
    setup.toggle("new-checkout", False)
    change = changes.get(timeout=PATIENCE)
    assert change.flags == ["new-checkout"]
    assert change.revision > status.revision
    assert client.bool_value("new-checkout", ACME, True) is False, "off now"
    detail = client.evaluate("new-checkout", ACME)
    assert (detail.reason, detail.variant) == ("DISABLED", "off")
    assert client.status().revision == change.revision
    eventually("the cache file follows", lambda: cached_revision(setup.cache_path) == change.revision)

    client.close()
    assert not client.status().stream_connected, "closed: the stream is gone"
    assert client.bool_value("new-checkout", ACME, True) is False, "reads keep working after close"
    client.close()


def test_the_client_tries_its_sources_in_order_and_says_what_each_answered(make_setup, tmp_path):
    setup = make_setup()
    refused = f"http://127.0.0.1:{free_port()}"

    with flagstaff.Client(refused, setup.key, fallback_urls=[setup.url], send_events=False) as client:
        assert client.status().source == f"server {setup.url}", "the fallback serves"

    cache = setup.cache_path
    with pytest.raises(flagstaff.NoSourceError) as caught:
        flagstaff.Client(setup.url, "fs_srv_not-a-real-key", fallback_urls=[refused], cache_file=cache)
    attempts = caught.value.attempts
    assert [a.source for a in attempts] == [f"server {setup.url}", f"server {refused}", f"cache file {cache}"]
    assert "401" in attempts[0].outcome and "rejected" in attempts[0].outcome
    assert "refused" in attempts[1].outcome
    assert "no such file" in attempts[2].outcome
    assert "not-a-real-key" not in str(caught.value), "the key never appears in an error"

    # A client key may not read the bundle.
    with pytest.raises(flagstaff.NoSourceError, match="403"):
        flagstaff.Client(setup.url, setup.new_key("client"))

    # A cache file written for another key is not used.
    setup.client(cache_file=cache).close()
    with pytest.raises(flagstaff.NoSourceError, match="another server key"):
        flagstaff.Client(refused, "fs_srv_another-key", cache_file=cache)

    with pytest.raises(ValueError, match="scheme"):
        flagstaff.Client("ftp://x", "k")
    with pytest.raises(ValueError, match="empty"):
        flagstaff.Client(setup.url, " ")
    with pytest.raises(ValueError, match="not allowed"):
        flagstaff.Client(setup.url, "fs_srv_x\r\nX-Evil: 1")


def test_with_the_server_down_the_cache_file_serves_then_the_sdk_catches_up(make_setup):
    setup = make_setup()
    cache = setup.cache_path
    first = setup.client(cache_file=cache)
    cached = first.status().revision
    first.close()
    # A change the cache file does not have, then the server goes away.
    setup.toggle("new-checkout", False)
    setup.server.kill()

    client = setup.client(cache_file=cache, poll_interval=3600, timeout=2)
    status = client.status()
    assert status.source == f"cache file {cache}"
    assert status.revision == cached
    assert not status.stream_connected and not status.online
    assert client.bool_value("new-checkout", ACME, False) is True, "the cached configuration: still on"

    changes = queue.Queue()
    client.on_change(changes.put)
    setup.server.restart()
    change = changes.get(timeout=PATIENCE)
    assert change.revision > cached
    assert "new-checkout" in change.flags
    assert client.status().source == f"server {setup.url}"
    assert client.bool_value("new-checkout", ACME, True) is False, "the server's configuration: off"
    eventually("the stream connects", lambda: client.status().stream_connected)
    eventually("the cache file follows", lambda: cached_revision(cache) == change.revision)
    client.close()


def test_the_sdk_resumes_after_the_server_is_killed_and_restarted(make_setup):
    setup = make_setup()
    client = setup.client(poll_interval=3600)
    online = queue.Queue()
    client.on_status(online.put)
    eventually("the stream connects", lambda: client.status().stream_connected)

    setup.server.kill()
    assert online.get(timeout=PATIENCE) is False, "told that no server answers"
    assert not client.status().stream_connected
    assert client.bool_value("new-checkout", ACME, False) is True, "reads go on while the server is down"

    setup.server.restart()
    assert online.get(timeout=PATIENCE) is True, "told that a server answers again"
    eventually("the stream reconnects", lambda: client.status().stream_connected)
    changes = queue.Queue()
    client.on_change(changes.put)
    setup.toggle("new-checkout", False)
    assert changes.get(timeout=PATIENCE).flags == ["new-checkout"]
    assert client.bool_value("new-checkout", ACME, True) is False
    client.close()


def test_polling_delivers_while_the_stream_is_blocked(make_setup):
    setup = make_setup()
    hole = BlackHole()
    try:
        client = setup.client(stream_url=hole.url, request_timeout=1, poll_interval=0.2)
        assert client.bool_value("new-checkout", ACME, False) is True
        changes = queue.Queue()
        client.on_change(changes.put)
        setup.toggle("new-checkout", False)
        assert changes.get(timeout=PATIENCE).flags == ["new-checkout"]
        assert client.bool_value("new-checkout", ACME, True) is False
        assert not client.status().stream_connected, "the stream never answered"
        client.close()
    finally:
        hole.close()


def test_evaluation_counts_reach_the_server(make_setup):
    setup = make_setup(env={"FLAGSTAFF_EVENTS_FLUSH_SECS": "1"})
    client = setup.client(send_events=True, events_interval=3600)
    for _ in range(5):
        assert client.bool_value("new-checkout", ACME, False)
    # Reads from several threads count too.
    threads = [threading.Thread(target=lambda: [client.bool_value("new-checkout", OTHER, True) for _ in range(100)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.evaluate("banner", OTHER).variant == "b"
    # Not served: not counted; all_flags is not counted either.
    assert client.string_value("new-checkout", ACME, "d") == "d"
    client.all_flags(ACME)
    client.close()
    expected = [("banner", "b", 1), ("new-checkout", "off", 400), ("new-checkout", "on", 5)]
    eventually(f"the server counts {expected}", lambda: setup.evaluation_counts() == expected)
