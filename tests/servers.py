"""Private Redis and memcached servers for the test suite: free loopback ports, temp dirs.

Under ``CI=true`` a missing server binary fails the run instead of skipping.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field

IN_CI = os.environ.get("CI", "").lower() == "true"
PR_SET_PDEATHSIG = 1


class ServerUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerUnavailable(f"server on port {port} exited with {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise ServerUnavailable(f"nothing answered on port {port} within {seconds} s")


def die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it dies (Linux), so a
    killed test run or benchmark leaves no server behind."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def find_binary(name: str, debian_package: str) -> str:
    """The server binary, installing the Debian package when missing and running as root."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin")
    if path is None and os.geteuid() == 0 and shutil.which("apt-get"):
        subprocess.run(["apt-get", "install", "-y", "-qq", debian_package], capture_output=True)
        path = shutil.which(name)
    if path is None:
        raise ServerUnavailable(f"{name} is not installed (Debian package {debian_package})")
    return path


@dataclass
class Server:
    name: str
    port: int
    process: subprocess.Popen
    directory: str
    log: str = field(default="")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_redis(port: int) -> Server:
    binary = find_binary("redis-server", "redis-server")
    directory = tempfile.mkdtemp(prefix="tasklock-redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory, "--logfile", os.path.join(directory, "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
    )  # fmt: skip
    wait_for_port(port, process)
    return Server("redis", port, process, directory)


def start_memcached(port: int) -> Server:
    binary = find_binary("memcached", "memcached")
    directory = tempfile.mkdtemp(prefix="tasklock-memcached-")
    user = ["-u", "root"] if os.geteuid() == 0 else []
    process = subprocess.Popen(
        [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "256", *user],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
    )  # fmt: skip
    wait_for_port(port, process)
    return Server("memcached", port, process, directory)


def reserve_addresses() -> None:
    """Pick free loopback ports for the harness's servers, once per test run.

    The settings read them from the environment, so subprocesses (contenders, the Celery
    worker) inherit the same addresses; the harness then starts the servers there.
    """
    for variable in ("TASKLOCK_TEST_REDIS", "TASKLOCK_TEST_MEMCACHED", "TASKLOCK_TEST_DOWN"):
        os.environ.setdefault(variable, f"127.0.0.1:{free_port()}")


def port_of(variable: str) -> int:
    return int(os.environ[variable].rpartition(":")[2])


def postgres_answers(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False
