"""The pure-Python pieces on their own: the SSE parser, the reconnection backoff, the cache file
(the same format as the Rust SDK's), and URL checks."""

import json
import os
import random

import pytest

from flagstaff import _cache, _http
from flagstaff._sse import Backoff, Event, Parser


def parse(text, last_id=None):
    parser = Parser(last_id)
    events = [parser.line(line) for line in text.split("\n")]
    return [e for e in events if e is not None], parser


def test_sse_events_ids_comments_and_retry():
    events, parser = parse("retry: 3000\n: keep-alive\nid: 7\nevent: change\ndata: {\"revision\":7}\n\ndata: a\ndata: b\n\nid\ndata: c\n\n")
    assert events == [Event("change", '{"revision":7}', "7"), Event("message", "a\nb", "7"), Event("message", "c", None)]
    assert parser.retry == 3000
    # Events without data are not dispatched, and reset the type; a bad retry is ignored.
    events, parser = parse("event: a\n\ndata: z\n\nretry: soon\n\n", last_id="9")
    assert events == [Event("message", "z", "9")]
    assert parser.retry is None


def test_backoff_doubles_to_the_cap_with_jitter_in_the_upper_half():
    random.seed(7)
    backoff = Backoff(0.1, 2.0)
    for step in [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]:
        assert step / 2 <= backoff.next_delay() <= step
    backoff.reset()
    assert backoff.next_delay() <= 0.1
    spread = [Backoff(1.0, 1.0).next_delay() for _ in range(50)]
    assert max(spread) - min(spread) > 0.2, "clients spread apart"
    for _ in range(1000):
        backoff.next_delay()
    assert backoff.next_delay() <= 2.0


def test_the_cache_file_round_trips_atomically_and_names_no_key(tmp_path):
    path = str(tmp_path / "flags.json")
    print_ = _cache.key_fingerprint("fs_srv_secret")
    bundle = b'{"flagstaff":1,"project":{"key":"shop"},"environment":"production","revision":12,"flags":[]}'
    _cache.write(path, print_, '"r12-abc"', bundle)
    raw, etag = _cache.read(path, print_)
    assert (json.loads(raw), etag) == (json.loads(bundle), '"r12-abc"')
    assert "fs_srv_secret" not in open(path).read()
    assert os.listdir(tmp_path) == ["flags.json"], "no temporary file left"
    with pytest.raises(_cache.CacheError, match="another server key"):
        _cache.read(path, _cache.key_fingerprint("other"))
    with pytest.raises(_cache.CacheError, match="no such file"):
        _cache.read(str(tmp_path / "missing.json"), print_)
    (tmp_path / "flags.json").write_text('{"flagstaff_sdk_cache": 9, "key": "x", "bundle": {}}')
    with pytest.raises(_cache.CacheError, match="format 9"):
        _cache.read(path, print_)
    (tmp_path / "flags.json").write_text('{"flagstaff_sdk_cache": 1,')
    with pytest.raises(_cache.CacheError, match="not a Flagstaff SDK cache file"):
        _cache.read(path, print_)
    # A failed replacement (a directory where the file goes) leaves no temporary file.
    os.remove(path)
    os.mkdir(path)
    with pytest.raises(OSError):
        _cache.write(path, print_, None, bundle)
    assert os.listdir(tmp_path) == ["flags.json"]


def test_the_fingerprint_is_the_rust_sdks():
    # sdk/rust/src/cache.rs: the first 8 bytes of SHA-256("flagstaff-sdk-cache:" + key), in hex.
    import hashlib

    assert _cache.key_fingerprint("k") == hashlib.sha256(b"flagstaff-sdk-cache:k").hexdigest()[:16]


def test_base_urls_are_normalised_and_checked():
    assert _http.Endpoint("http://127.0.0.1:8080").base == "http://127.0.0.1:8080"
    endpoint = _http.Endpoint("https://x.test/flags/")
    assert (endpoint.base, endpoint.prefix, endpoint.https) == ("https://x.test/flags", "/flags", True)
    for bad in ["ftp://x.test", "x.test:80", "https://x.test/?a=1", "https://user:pw@x.test/", "http://x.test:99999", None]:
        with pytest.raises(ValueError):
            _http.Endpoint(bad)
