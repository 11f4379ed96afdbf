"""The conformance corpus (eval/testdata/conformance.json, its format in CONFORMANCE.md beside
it): each suite's bundle served over HTTP to the real client, each case's context evaluated,
the result compared exactly — value, variant, reason, error code, and rule id, prerequisite
and version where the case gives them — and the typed reads checked against it."""

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import flagstaff
from conftest import ROOT

CORPUS = Path(os.environ.get("FLAGSTAFF_CONFORMANCE") or ROOT / "eval/testdata/conformance.json")


def same(a, b):
    """JSON equality: 1 and 1.0 are one number, but true is not 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


class BundleServer:
    """Serves one bundle at /sdk/v1/bundle on a loopback port, as the server does."""

    def __init__(self, bundle: bytes):
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                if self.path != "/sdk/v1/bundle" or self.headers.get("Authorization") != "Bearer fs_srv_conformance":
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("ETag", '"conformance"')
                self.send_header("Content-Length", str(len(bundle)))
                self.end_headers()
                self.wfile.write(bundle)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def suites():
    # The corpus is part of the repository: without it this module fails to collect, loudly.
    corpus = json.loads(CORPUS.read_text())
    assert corpus["flagstaff_conformance"] == 1
    return corpus["suites"]


@pytest.mark.parametrize("suite", suites(), ids=lambda s: s["name"])
def test_the_conformance_corpus(suite):
    server = BundleServer(json.dumps(suite["bundle"]).encode())
    try:
        client = flagstaff.Client(server.url, "fs_srv_conformance", stream=False, send_events=False)
    finally:
        server.close()
    failures = []
    assert suite["cases"], suite["name"]
    for case in suite["cases"]:
        flag, context, expect = case["flag"], case["context"], case["expect"]
        got = client.evaluate(flag, context)
        mine = {"value": got.value, "variant": got.variant, "reason": got.reason, "errorCode": got.error,
                "ruleId": got.rule_id, "prerequisite": got.prerequisite, "version": got.version}
        wanted = {k: expect[k] for k in ("value", "variant", "reason", "errorCode")}
        wanted.update({k: expect[k] for k in ("ruleId", "prerequisite", "version") if k in expect})
        mine = {k: mine[k] for k in wanted}
        if not same(mine, wanted):
            failures.append(f"{case['name']}: expected {wanted}, got {mine}")
            continue
        # The typed reads agree with evaluate: the value when its type fits, else the default.
        value, default = expect["value"], object()
        reads = [
            (client.bool_value, lambda v: isinstance(v, bool)),
            (client.string_value, lambda v: isinstance(v, str)),
            (client.number_value, lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)),
            (client.json_value, lambda v: v is not None or expect["errorCode"] is None),
        ]
        for read, fits in reads:
            result = read(flag, context, default)
            ok = same(result, value) if expect["errorCode"] is None and fits(value) else result is default
            if not ok:
                failures.append(f"{case['name']}: {read.__name__} gave {result!r}")
    client.close()
    assert not failures, f"{len(failures)} of {len(suite['cases'])} cases differ:\n" + "\n".join(failures)
