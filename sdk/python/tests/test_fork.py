"""Pre-fork servers (gunicorn, uWSGI): a client made before `os.fork()` works in the child —
its own stream, its own updates — and the parent's keeps working too."""

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
