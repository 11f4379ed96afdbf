"""The Python SDK's figures (BENCHMARKS.md, "Python SDK"); run by bench/python-sdk.sh.

1. `bool_value` with a 5-attribute context, against `flagstaff serve` on 127.0.0.1; in the same
   run, the same flag through OpenFeature with this SDK's provider and with the PyPI OFREP
   provider (`openfeature-provider-ofrep`, one HTTP request per evaluation).
2. Memory of 1,000 flags: the process's resident memory before and after building engines from
   a 1,000-flag bundle (the native engine's memory is not Python's, so tracemalloc cannot see it).
3. Toggle → SDK: PATCH a flag, time until the client's `on_change` callback holds it.
"""

import gc
import json
import os
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sdk/python/tests"))

from conftest import Setup, document  # noqa: E402

import flagstaff  # noqa: E402
from flagstaff._native import Engine  # noqa: E402

READS = int(os.environ.get("READS", "200000"))
OFREP_READS = int(os.environ.get("OFREP_READS", "2000"))
SAMPLES = int(os.environ.get("SAMPLES", "200"))

CONTEXT = {"targetingKey": "u-9", "email": "ada@acme.com", "plan": "pro", "country": "DE", "version": "2.1.0"}


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def per_call(fn, n: int, rounds: int = 5) -> float:
    """Median over `rounds` of the mean time of one call, in seconds."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(n):
            fn()
        times.append((time.perf_counter() - start) / n)
    return statistics.median(times)


def thousand_flags():
    doc = document()
    doc["flags"] = doc["flags"][:1]
    for i in range(1000):
        doc["flags"].append({
            "key": f"flag-{i:04}", "type": "boolean",
            "variations": [{"key": "on", "value": True}, {"key": "off", "value": False}],
            "environments": {"production": {"enabled": True,
                "rules": [{"id": "r", "clauses": [
                    {"attribute": "country", "op": "in", "values": ["DE", "FR", "GB", "US", "JP"]},
                    {"attribute": "email", "op": "ends_with", "values": ["@acme.com"]}], "serve": {"variation": "on"}}],
                "fallthrough": {"rollout": {"variations": [{"variation": "on", "weight": 50000}, {"variation": "off", "weight": 50000}]}}}},
        })
    return doc


def main() -> None:
    from openfeature import api
    from openfeature.contrib.provider.ofrep import OFREPProvider
    from openfeature.evaluation_context import EvaluationContext

    print(f"python {sys.version.split()[0]}, flagstaff-sdk {flagstaff.__version__}, server {os.environ['FLAGSTAFF_BIN']}")
    with tempfile.TemporaryDirectory() as tmp:
        setup = Setup(Path(tmp) / "reads", document())
        try:
            client = flagstaff.Client(setup.url, setup.key, send_events=False)
            assert client.bool_value("new-checkout", CONTEXT, False) is True
            read = lambda: client.bool_value("new-checkout", CONTEXT, False)  # noqa: E731
            static = lambda: client.bool_value("half", CONTEXT, False)  # noqa: E731
            print("\n== reads (median of 5 rounds)")
            print(f"bool_value, 5-attribute context, segment rule matches: {per_call(read, READS) * 1e9:,.0f} ns")
            print(f"bool_value, 5-attribute context, 50/50 rollout:        {per_call(static, READS) * 1e9:,.0f} ns")
            print(f"evaluate (full result):                                {per_call(lambda: client.evaluate('new-checkout', CONTEXT), READS // 4) * 1e9:,.0f} ns")
            ctx = EvaluationContext("u-9", {k: v for k, v in CONTEXT.items() if k != "targetingKey"})
            api.set_provider_and_wait(flagstaff.FlagstaffProvider(client=client), domain="local")
            local = api.get_client(domain="local")
            assert local.get_boolean_value("new-checkout", False, ctx) is True
            print(f"OpenFeature + FlagstaffProvider:                       {per_call(lambda: local.get_boolean_value('new-checkout', False, ctx), READS // 20) * 1e6:,.1f} µs")
            api.set_provider_and_wait(
                OFREPProvider(setup.url, headers_factory=lambda: {"Authorization": f"Bearer {setup.key}"}), domain="ofrep"
            )
            remote = api.get_client(domain="ofrep")
            assert remote.get_boolean_value("new-checkout", False, ctx) is True
            print(f"OpenFeature + PyPI OFREP provider (HTTP per read):     {per_call(lambda: remote.get_boolean_value('new-checkout', False, ctx), OFREP_READS, 3) * 1e6:,.1f} µs")
            api.shutdown()
            client.close()
        finally:
            setup.server.kill()

        print("\n== memory, 1,000 flags")
        setup = Setup(Path(tmp) / "memory", thousand_flags())
        try:
            gc.collect()
            before = rss()
            client = flagstaff.Client(setup.url, setup.key, send_events=False)
            gc.collect()
            after = rss()
            raw = json.dumps(thousand_flags()["flags"]).encode()
            print(f"bundle: {len(raw) / 2**20:.2f} MiB of JSON, {client.status().flags} flags")
            print(f"resident memory added by a started client (engine, threads, HTTP): {(after - before) / 2**20:.2f} MiB")
            import http.client

            conn = http.client.HTTPConnection("127.0.0.1", setup.server.port)
            conn.request("GET", "/sdk/v1/bundle", headers={"Authorization": f"Bearer {setup.key}"})
            bundle = conn.getresponse().read()
            gc.collect()
            before = rss()
            engines = [Engine.from_bytes(bundle) for _ in range(10)]
            gc.collect()
            print(f"one more compiled 1,000-flag configuration (mean of 10): {(rss() - before) / 10 / 2**20:.2f} MiB")
            del engines
            client.close()
        finally:
            setup.server.kill()

        print(f"\n== toggle → SDK, {SAMPLES} toggles")
        setup = Setup(Path(tmp) / "latency", document())
        try:
            client = flagstaff.Client(setup.url, setup.key, send_events=False, poll_interval=3600)
            while not client.status().stream_connected:
                time.sleep(0.01)
            arrived: "queue.Queue[float]" = queue.Queue()
            client.on_change(lambda change: arrived.put(time.perf_counter()))
            sent_to_held, answer_to_held = [], []
            for i in range(SAMPLES):
                sent = time.perf_counter()
                setup.toggle("new-checkout", i % 2 == 1)
                answered = time.perf_counter()
                held = arrived.get(timeout=20)
                sent_to_held.append(held - sent)
                answer_to_held.append(held - answered)
            client.close()
        finally:
            setup.server.kill()

        def q(xs, p):
            xs = sorted(xs)
            return xs[min(len(xs) - 1, int(p * len(xs)))]

        print(f"toggle sent → SDK holds it: median {statistics.median(sent_to_held) * 1e3:.1f} ms, "
              f"p99 {q(sent_to_held, 0.99) * 1e3:.1f} ms, max {max(sent_to_held) * 1e3:.1f} ms")
        print(f"API answer received → SDK holds it: median {statistics.median(answer_to_held) * 1e3:.2f} ms, "
              f"p99 {q(answer_to_held, 0.99) * 1e3:.2f} ms (negative: before the answer)")
        print(f"\nload average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
