"""Pre-fork servers: a client made before `os.fork()` works in the child — its own stream, its
own updates — and the parent's keeps working too; and the real thing, gunicorn with `--preload`
and two workers, each of which hears of a toggle over its own stream."""

import os
import queue
import select
import signal
import sys

import pytest

from conftest import PATIENCE, eventually

ACME = {"targetingKey": "u-9", "email": "ada@acme.com"}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_a_forked_child_still_receives_changes(make_setup):
    setup = make_setup()
    client = setup.client(poll_interval=3600)
    eventually("the parent's stream connects", lambda: client.status().stream_connected)
    parent_changes = queue.Queue()
    client.on_change(parent_changes.put)
    to_parent, from_child = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.close(to_parent)
            changes = queue.Queue()
            client.on_change(changes.put)
            eventually("the child's own stream connects", lambda: client.status().stream_connected)
            os.write(from_child, b"ready\n")
            change = changes.get(timeout=PATIENCE)
            ok = change.flags == ["new-checkout"] and client.bool_value("new-checkout", ACME, True) is False
            os.write(from_child, b"changed\n" if ok else f"wrong: {change}\n".encode())
            client.close()
            code = 0
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            os.write(from_child, f"child failed: {e!r}\n".encode())
        finally:
            sys.stdout.flush()
            os._exit(code)
    os.close(from_child)
    received = b""

    def line():
        """The child's next line; a child silent for too long is killed (it must never hang)."""
        nonlocal received
        while b"\n" not in received:
            ready, _, _ = select.select([to_parent], [], [], 2 * PATIENCE)
            chunk = os.read(to_parent, 4096) if ready else b""
            if not chunk:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError(f"the child said nothing more (after {received!r})")
            received += chunk
        first, received = received.split(b"\n", 1)
        return first.decode()

    try:
        assert line() == "ready"
        setup.toggle("new-checkout", False)
        assert line() == "changed"
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(to_parent)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's stream was not disturbed by the child's.
    assert parent_changes.get(timeout=PATIENCE).flags == ["new-checkout"]
    assert client.bool_value("new-checkout", ACME, True) is False
    assert client.status().stream_connected
    client.close()


GUNICORN_APP = '''
import json, os, time
import flagstaff

# Made once in gunicorn's master (--preload), before it forks its workers.
client = flagstaff.Client(os.environ["FLAGSTAFF_URL"], os.environ["FLAGSTAFF_KEY"], poll_interval=3600,
                          reconnect_backoff=(0.05, 0.4), send_events=False)

def app(environ, start_response):
    time.sleep(0.1)  # concurrent requests then reach both workers
    status = client.status()
    body = json.dumps({"pid": os.getpid(), "stream": status.stream_connected, "revision": status.revision,
                       "on": client.bool_value("new-checkout", {"targetingKey": "u-9", "email": "ada@acme.com"}, None)})
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body.encode()]
'''


def test_gunicorn_workers_forked_from_a_preloaded_app_receive_changes(make_setup, tmp_path):
    import json
    import subprocess
    import time
    import urllib.request
    from concurrent.futures import ThreadPoolExecutor

    from conftest import free_port

    setup = make_setup()
    (tmp_path / "flagapp.py").write_text(GUNICORN_APP)
    port = free_port()
    gunicorn = os.path.join(os.path.dirname(sys.executable), "gunicorn")
    env = dict(os.environ, FLAGSTAFF_URL=setup.url, FLAGSTAFF_KEY=setup.key)
    log = open(tmp_path / "gunicorn.log", "wb")
    server = subprocess.Popen(
        [gunicorn, "--preload", "--workers", "2", "--bind", f"127.0.0.1:{port}", "--chdir", str(tmp_path), "flagapp:app"],
        env=env, stdout=log, stderr=log,
    )
    try:
        def ask(_):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
                    return json.loads(r.read())
            except OSError:
                return None

        def workers():
            """What each worker answers, by PID, from 6 concurrent requests."""
            with ThreadPoolExecutor(6) as pool:
                return {a["pid"]: a for a in pool.map(ask, range(6)) if a}

        deadline = time.monotonic() + 2 * PATIENCE
        seen = {}
        while not (len(seen) == 2 and all(a["stream"] for a in seen.values())):
            assert time.monotonic() < deadline, f"two streaming workers: {seen}; {(tmp_path / 'gunicorn.log').read_text()[-2000:]}"
            seen.update(workers())
        assert all(a["on"] is True for a in seen.values())
        before = next(iter(seen.values()))["revision"]

        setup.toggle("new-checkout", False)
        changed = {}
        while set(changed) != set(seen):
            assert time.monotonic() < deadline + PATIENCE, f"each worker has the change: {changed} of {list(seen)}"
            changed.update({pid: a for pid, a in workers().items() if pid in seen and a["on"] is False})
        assert all(a["revision"] > before for a in changed.values())
    finally:
        server.terminate()
        server.wait(timeout=PATIENCE)
        log.close()
