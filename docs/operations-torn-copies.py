#!/usr/bin/env python3
"""Is a plain `cp` of a live SQLite file a backup? The experiment behind docs/operations.md.

A writer thread changes a SQLite database as fast as it can, each change touching several pages
(an insert into an indexed table, an update, a counter). Meanwhile the main thread copies the
database file with `cp` again and again and checks every copy: `PRAGMA integrity_check`, and
whether the counter agrees with the rows (a copy can pass the check and still mix two states).

Modes:
  wal      WAL journal, synchronous=FULL, `PRAGMA wal_checkpoint(FULL)` after each commit
           (the file is changed in place by every checkpoint)
  delete   rollback journal (the default mode: the file is changed in place by every commit)
  publish  what Flagstaff does: the live database elsewhere; before each commit, the whole
           database is written to a temporary file, flushed, and renamed over the copied file

Usage: python3 docs/operations-torn-copies.py MODE [COPIES]   (standard library only)
"""

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time

ROWS = 300


def main():
    mode = sys.argv[1] if len(sys.argv) > 1 else "wal"
    copies = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    if mode not in ("wal", "delete", "publish"):
        sys.exit(__doc__)
    work = tempfile.mkdtemp(prefix=f"torn-{mode}-")
    target = os.path.join(work, "flagstaff.db")
    live = target if mode != "publish" else os.path.join(work, "live.db")

    conn = sqlite3.connect(live, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=" + ("delete" if mode == "delete" else "wal"))
    conn.execute("PRAGMA synchronous=" + ("OFF" if mode == "publish" else "FULL"))
    conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v BLOB)")
    conn.execute("CREATE INDEX t_k ON t(k)")
    conn.execute("CREATE TABLE counter(n INTEGER)")
    conn.execute("INSERT INTO counter VALUES (0)")
    for i in range(ROWS):
        conn.execute("INSERT INTO t(k, v) VALUES (?, randomblob(600))", (f"k{i:06d}",))

    def publish():
        staging = os.path.join(work, ".flagstaff.db.publishing")
        image = conn.serialize()  # sees the open transaction
        with open(staging, "wb") as f:
            f.write(image)
            f.flush()
            os.fsync(f.fileno())
        os.rename(staging, target)
        fd = os.open(work, os.O_RDONLY)
        os.fsync(fd)
        os.close(fd)

    if mode == "wal":
        conn.execute("PRAGMA wal_checkpoint(FULL)")
    if mode == "publish":
        conn.execute("BEGIN IMMEDIATE")
        publish()
        conn.execute("COMMIT")

    stop = threading.Event()

    def writer():
        i = ROWS
        while not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t(k, v) VALUES (?, randomblob(600))", (f"k{(i * 7919) % 1000003:07d}",))
            conn.execute("UPDATE t SET v = randomblob(600) WHERE id = ?", ((i * 31) % i + 1,))
            conn.execute("UPDATE counter SET n = n + 1")
            if mode == "publish":
                publish()
            conn.execute("COMMIT")
            if mode == "wal":
                conn.execute("PRAGMA wal_checkpoint(FULL)")
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    failed = inconsistent = 0
    started = time.time()
    copy = os.path.join(work, "copy.db")
    for _ in range(copies):
        for suffix in ("", "-wal", "-shm", "-journal"):
            if os.path.exists(copy + suffix):
                os.remove(copy + suffix)
        subprocess.run(["cp", target, copy], check=True)
        try:
            c = sqlite3.connect(copy)
            if c.execute("PRAGMA integrity_check").fetchall() != [("ok",)]:
                failed += 1
            elif c.execute("SELECT count(*) FROM t").fetchone()[0] != c.execute("SELECT n FROM counter").fetchone()[0] + ROWS:
                inconsistent += 1
            c.close()
        except sqlite3.DatabaseError:
            failed += 1
    stop.set()
    thread.join()
    writes = conn.execute("SELECT n FROM counter").fetchone()[0]
    print(
        f"mode={mode} copies={copies} writes={writes} seconds={time.time() - started:.1f} "
        f"integrity_check_failed={failed} inconsistent={inconsistent} "
        f"bad={100.0 * (failed + inconsistent) / copies:.1f}%"
    )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
