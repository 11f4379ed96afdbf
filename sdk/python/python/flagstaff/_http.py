"""The SDK's three requests to a Flagstaff server (docs/sdk-protocol.md): the bundle, the stream
and the evaluation counts, over the standard library's http.client."""

from __future__ import annotations

import gzip
import http.client
import socket
import ssl
import urllib.parse
from typing import Optional, Tuple

from ._version import __version__

USER_AGENT = f"flagstaff-sdk-python/{__version__}"


class RequestError(Exception):
    """Why a request failed, said so that a person can act on it (never containing the key)."""


class Endpoint:
    """One server (primary or fallback), by its base URL without a trailing slash."""

    __slots__ = ("base", "https", "host", "port", "prefix")

    def __init__(self, url: str):
        if not isinstance(url, str):
            raise ValueError(f"invalid URL {url!r}: not a string")
        parsed = urllib.parse.urlsplit(url.strip())
        if parsed.scheme not in ("http", "https"):
            raise ValueError(f"invalid URL {url!r}: scheme {parsed.scheme!r} is not http or https")
        if not parsed.hostname:
            raise ValueError(f"invalid URL {url!r}: no host")
        if parsed.query or parsed.fragment:
            raise ValueError(f"invalid URL {url!r}: a base URL takes no query or fragment")
        if parsed.username or parsed.password:
            raise ValueError(
                f"invalid URL {url!r}: credentials do not belong in the URL; the server key is sent in a header"
            )
        try:
            port = parsed.port
        except ValueError as e:
            raise ValueError(f"invalid URL {url!r}: {e}") from None
        self.https = parsed.scheme == "https"
        self.host = parsed.hostname
        self.port = port
        self.prefix = parsed.path.rstrip("/")
        netloc = parsed.netloc
        self.base = f"{parsed.scheme}://{netloc}{self.prefix}"

    def __repr__(self) -> str:
        return self.base

    def connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(
                self.host, self.port, timeout=timeout, context=ssl.create_default_context()
            )
        return http.client.HTTPConnection(self.host, self.port, timeout=timeout)


def _describe(error: BaseException, timeout: float) -> RequestError:
    if isinstance(error, RequestError):
        return error
    if isinstance(error, (socket.timeout, TimeoutError)):
        return RequestError(f"no answer within {timeout:g} s")
    if isinstance(error, ConnectionRefusedError):
        return RequestError("connection refused")
    text = str(error) or type(error).__name__
    return RequestError(f"{type(error).__name__}: {text}")


def _unexpected(response: http.client.HTTPResponse) -> RequestError:
    status = f"{response.status} {response.reason}".strip()
    if response.status in (401, 403):
        return RequestError(f"the server key was rejected (HTTP {status}); is it a current server key?")
    try:
        body = response.read(4096).decode("utf-8", "replace")[:200].rstrip()
    except Exception:  # noqa: BLE001 - the status says enough
        body = ""
    return RequestError(f"HTTP {status}: {body}" if body else f"HTTP {status}")


def fetch_bundle(
    endpoint: Endpoint, auth: str, etag: Optional[str], timeout: float
) -> Tuple[Optional[bytes], Optional[str]]:
    """`GET /sdk/v1/bundle`, conditional on `etag` when given: `(bytes, etag)`, or `(None,
    etag)` for 304 Not Modified."""
    conn = endpoint.connection(timeout)
    try:
        headers = {
            "Authorization": auth,
            "Accept": "application/json",
            "Accept-Encoding": "gzip",
            "User-Agent": USER_AGENT,
        }
        if etag is not None:
            headers["If-None-Match"] = etag
        conn.request("GET", endpoint.prefix + "/sdk/v1/bundle", headers=headers)
        response = conn.getresponse()
        if response.status == 304 and etag is not None:
            response.read()
            return None, etag
        if response.status != 200:
            raise _unexpected(response)
        body = response.read()
        if (response.getheader("Content-Encoding") or "").lower() == "gzip":
            body = gzip.decompress(body)
        return body, response.getheader("ETag")
    except Exception as e:  # noqa: BLE001 - every failure becomes one sentence
        raise _describe(e, timeout) from None
    finally:
        conn.close()


def open_stream(
    endpoint: Endpoint, auth: str, last_event_id: Optional[str], timeout: float
) -> Tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
    """`GET /sdk/v1/stream`: the connection and its response once the headers arrived."""
    conn = endpoint.connection(timeout)
    try:
        headers = {
            "Authorization": auth,
            "Accept": "text/event-stream",
            "Cache-Control": "no-cache",
            "User-Agent": USER_AGENT,
        }
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        conn.request("GET", endpoint.prefix + "/sdk/v1/stream", headers=headers)
        response = conn.getresponse()
        if response.status != 200:
            raise _unexpected(response)
        if not (response.getheader("Content-Type") or "").startswith("text/event-stream"):
            raise RequestError("the stream answered with a content type other than text/event-stream")
        return conn, response
    except Exception as e:  # noqa: BLE001
        conn.close()
        raise _describe(e, timeout) from None


def post_events(endpoint: Endpoint, auth: str, body: bytes, timeout: float) -> None:
    """`POST /sdk/v1/events`; raises `RequestError` with `.status` set for an HTTP refusal."""
    conn = endpoint.connection(timeout)
    try:
        conn.request(
            "POST",
            endpoint.prefix + "/sdk/v1/events",
            body=body,
            headers={"Authorization": auth, "Content-Type": "application/json", "User-Agent": USER_AGENT},
        )
        response = conn.getresponse()
        if not 200 <= response.status < 300:
            error = _unexpected(response)
            error.status = response.status  # type: ignore[attr-defined]
            raise error
        response.read()
    except RequestError:
        raise
    except Exception as e:  # noqa: BLE001
        raise _describe(e, timeout) from None
    finally:
        conn.close()
