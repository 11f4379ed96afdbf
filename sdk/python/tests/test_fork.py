"""Pre-fork servers (gunicorn, uWSGI): a client made before `os.fork()` works in the child —
its own stream, its own updates — and the parent's keeps working too."""

import os
import queue
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
    child = os.fdopen(to_parent, "rb")
    try:
        assert child.readline() == b"ready\n"
        setup.toggle("new-checkout", False)
        assert child.readline() == b"changed\n"
    finally:
        _, status = os.waitpid(pid, 0)
        child.close()
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's stream was not disturbed by the child's.
    assert parent_changes.get(timeout=PATIENCE).flags == ["new-checkout"]
    assert client.bool_value("new-checkout", ACME, True) is False
    assert client.status().stream_connected
    client.close()
