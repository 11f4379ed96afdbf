"""A toggle on the primary to its event on SDK streams (bench/relay.sh): one stream on the primary
and one on the relay, both open while the primary's flag is toggled TOGGLES times; for each
toggle, the time from sending the PATCH to each stream's event naming the flag. Standard
library only."""

import argparse
import http.client
import json
import threading
import time
import urllib.parse


def follow(base, key, flag, arrivals, ready):
    url = urllib.parse.urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=60)
    conn.request("GET", "/sdk/v1/stream", headers={"Authorization": f"Bearer {key}"})
    res = conn.getresponse()
    assert res.status == 200, res.status
    ready.set()
    data = None
    while True:
        line = res.fp.readline()
        if not line:
            return
        line = line.decode().rstrip("\r\n")
        if line.startswith("data: "):
            data = json.loads(line[6:])
        elif line == "" and data is not None:
            if flag in data.get("changed", []):
                arrivals.append((time.perf_counter(), data["revision"]))
            data = None


def main():
    p = argparse.ArgumentParser()
    for name in ("primary", "relay", "token", "key", "project", "flag"):
        p.add_argument("--" + name, required=True)
    p.add_argument("--toggles", type=int, default=30)
    a = p.parse_args()
    streams = {"primary": [], "relay": []}
    for name, base in (("primary", a.primary), ("relay", a.relay)):
        ready = threading.Event()
        threading.Thread(target=follow, args=(base, a.key, a.flag, streams[name], ready), daemon=True).start()
        ready.wait(10)
    time.sleep(0.5)
    # The connect event lists every flag: not a toggle's.
    for arrivals in streams.values():
        arrivals.clear()
    url = urllib.parse.urlsplit(a.primary)
    api = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    path = f"/api/v1/projects/{a.project}/flags/{a.flag}/environments/production"
    sent = []
    for i in range(a.toggles):
        before = {k: len(v) for k, v in streams.items()}
        body = json.dumps({"enabled": i % 2 == 1})
        start = time.perf_counter()
        api.request("PATCH", path, body=body, headers={"Authorization": f"Bearer {a.token}",
                                                       "Content-Type": "application/json"})
        res = api.getresponse()
        res.read()
        assert res.status == 200, res.status
        sent.append(start)
        deadline = time.time() + 10
        while any(len(streams[k]) <= before[k] for k in streams) and time.time() < deadline:
            time.sleep(0.001)
        time.sleep(0.05)
    for name, arrivals in streams.items():
        ms = sorted((arrivals[i][0] - sent[i]) * 1000 for i in range(min(len(sent), len(arrivals))))
        if not ms:
            print(f"{name}: no events")
            continue
        p50 = ms[len(ms) // 2]
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        print(f"{name:8s} {len(ms)} events: median {p50:.1f} ms, p99 {p99:.1f} ms, max {ms[-1]:.1f} ms")


if __name__ == "__main__":
    main()
