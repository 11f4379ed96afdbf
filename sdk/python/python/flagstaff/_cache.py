"""The on-disk copy of the last bundle: a start-up source when no server answers.

The same file as the Rust SDK's: JSON `{"flagstaff_sdk_cache": 1, "key": "<fingerprint>",
"etag": …, "saved_at": "<RFC 3339>", "bundle": <the bundle as served>}`, replaced atomically
(a temporary file in the same directory, flushed, synced, renamed), so a reader or a crash never
sees half a file. The fingerprint (a truncated SHA-256 of the server key, not the key) keeps a
client from starting on a copy written for another environment's key.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from datetime import datetime, timezone
from typing import Optional, Tuple

FORMAT = 1


class CacheError(Exception):
    """Why a cache file could not be used."""


def key_fingerprint(server_key: str) -> str:
    """A fingerprint of a server key that does not reveal it."""
    return hashlib.sha256(f"flagstaff-sdk-cache:{server_key}".encode()).digest()[:8].hex()


def read(path: str, fingerprint: str) -> Tuple[bytes, Optional[str]]:
    """The bundle's bytes and ETag held in the cache file at `path`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CacheError("no such file") from None
    except OSError as e:
        raise CacheError(f"cannot read it: {e}") from None
    try:
        file = json.loads(data)
        version = file["flagstaff_sdk_cache"]
        key = file["key"]
        etag = file.get("etag")
        bundle = file["bundle"]
    except (ValueError, KeyError, TypeError) as e:
        raise CacheError(f"not a Flagstaff SDK cache file: {e}") from None
    if version != FORMAT:
        raise CacheError(f"cache format {version} is not supported (expected {FORMAT})")
    if key != fingerprint:
        raise CacheError("it was written for another server key")
    return json.dumps(bundle, ensure_ascii=False).encode(), etag


def write(path: str, fingerprint: str, etag: Optional[str], bundle: bytes) -> None:
    """Replaces the cache file at `path` with `bundle` (the bundle's bytes as served)."""
    saved_at = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
    head = json.dumps({"flagstaff_sdk_cache": FORMAT, "key": fingerprint, "etag": etag, "saved_at": saved_at})
    out = head[:-1].encode() + b',"bundle":' + bundle + b"}\n"
    directory = os.path.dirname(path) or "."
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(out)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    # Make the rename itself durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
