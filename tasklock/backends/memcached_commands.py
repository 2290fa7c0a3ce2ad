"""The memcached commands of a lock's round trip, sent on a server's client (``ServerClient``)
directly: without pymemcache's per-call work (key checks, serialisation, result dicts), which
is most of what a command costs in Python. They carry tasklock's own bytes and valid keys.
As in pymemcache, an error closes the connection; the next command connects again.
"""

from __future__ import annotations

from typing import Any

from pymemcache.client.base import _readline, _readvalue
from pymemcache.exceptions import MemcacheUnknownError


def _key(client: Any, key: str) -> bytes:
    """``key`` as sent: tasklock's keys are valid memcached keys; one with the client's own
    ``key_prefix`` is checked as pymemcache checks it."""
    return client.check_key(key, client.key_prefix) if client.key_prefix else key.encode()


def _socket(client: Any) -> Any:
    """The client's connected socket."""
    if client.sock is None:
        client._connect()
    return client.sock


def _unexpected(client: Any, line: bytes, name: bytes) -> Exception:
    """The error for an unexpected reply ``line``: memcached's own error raised, if it is one."""
    client._raise_errors(line, name)
    return MemcacheUnknownError(line[:32])


def send(client: Any, data: bytes) -> None:
    """``data`` (``noreply`` commands) in one write."""
    try:
        _socket(client).sendall(data)
    except Exception:
        client.close()
        raise


def _store(client: Any, request: bytes, name: bytes, answers: tuple[bytes, ...]) -> bool:
    """A storage command: True if memcached answers ``STORED``, False for its other ``answers``."""
    try:
        sock = _socket(client)
        sock.sendall(request)
        line = _readline(sock, b"")[1]
        if line in answers:
            return line == b"STORED"
        raise _unexpected(client, line, name)
    except Exception:
        client.close()
        raise


def add_then(client: Any, key: str, data: bytes, exptime: int, then: bytes) -> bool:
    """``add`` and, in the same write, the ``noreply`` commands ``then``; True if stored."""
    request = b"add %b 0 %d %d\r\n%b\r\n%b" % (_key(client, key), exptime, len(data), data, then)
    return _store(client, request, b"add", (b"STORED", b"NOT_STORED"))


def gets(client: Any, key: str) -> tuple[bytes | None, bytes | None]:
    """The value of ``key`` and its cas id, or None, None."""
    try:
        sock = _socket(client)
        sock.sendall(b"gets %b\r\n" % _key(client, key))
        buf, line = _readline(sock, b"")
        if line == b"END":
            return None, None
        if not line.startswith(b"VALUE "):
            raise _unexpected(client, line, b"gets")
        *_, size, cas_id = line.split()
        buf, value = _readvalue(sock, buf, int(size))
        end = _readline(sock, buf)[1]
        if end != b"END":
            raise _unexpected(client, end, b"gets")
        return value, cas_id
    except Exception:
        client.close()
        raise


def cas(client: Any, key: str, data: bytes, cas_id: bytes, exptime: int) -> bool:
    """``cas``: True if stored (an exptime of -1 deletes)."""
    request = b"cas %b 0 %d %d %b\r\n%b\r\n" % (_key(client, key), exptime, len(data), cas_id, data)
    return _store(client, request, b"cas", (b"STORED", b"EXISTS", b"NOT_FOUND"))
