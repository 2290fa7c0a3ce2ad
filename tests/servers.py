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
    return start_redis_node(port)


def start_memcached(port: int, *extra: str) -> Server:
    """A ``memcached`` on ``port`` with ``extra`` arguments (``-c 20``: a connection limit)."""
    binary = find_binary("memcached", "memcached")
    directory = tempfile.mkdtemp(prefix="tasklock-memcached-")
    user = ["-u", "root"] if os.geteuid() == 0 else []
    process = subprocess.Popen(
        [binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "256", *user, *extra],
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
    # a 3-primary cluster; a primary, its replica and a sentinel
    for variable in ("TASKLOCK_TEST_CLUSTER", "TASKLOCK_TEST_SENTINEL"):
        os.environ.setdefault(variable, ",".join(f"127.0.0.1:{free_port()}" for _ in range(3)))


def ports_of(variable: str) -> list[int]:
    return [int(address.rpartition(":")[2]) for address in os.environ[variable].split(",")]


def port_of(variable: str) -> int:
    return int(os.environ[variable].rpartition(":")[2])


def postgres_answers(host: str = "127.0.0.1", port: int = 5432) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
        return True
    except OSError:
        return False


@dataclass
class Topology:
    """Several servers started together (a cluster, or a primary with a replica and a sentinel)."""

    servers: list[Server]

    @property
    def ports(self) -> list[int]:
        return [server.port for server in self.servers]

    def stop(self) -> None:
        for server in self.servers:
            server.stop()


def start_redis_node(port: int, *extra: str, name: str = "redis") -> Server:
    """One ``redis-server`` with ``extra`` arguments, no persistence, in a temp dir."""
    binary = find_binary("redis-server", "redis-server")
    directory = tempfile.mkdtemp(prefix=f"tasklock-{name}-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", directory, "--logfile", os.path.join(directory, f"{name}.log"), *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
    )  # fmt: skip
    try:
        wait_for_port(port, process)
    except ServerUnavailable:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return Server(name, port, process, directory)


def redis_cli(port: int, *args: str, seconds: float = 60) -> str:
    binary = find_binary("redis-cli", "redis-tools")
    done = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True, text=True, timeout=seconds
    )
    if done.returncode:
        raise ServerUnavailable(f"redis-cli {' '.join(args)} failed: {done.stderr or done.stdout}")
    return done.stdout


def wait_until(condition, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise ServerUnavailable(f"{what} did not happen within {seconds} s")
        time.sleep(0.05)


def start_redis_cluster(ports: list[int]) -> Topology:
    """A primary on each port, joined by ``redis-cli --cluster create``, all slots covered and
    the cluster state ``ok``. Each bus port is a free port of its own (the default, port +
    10000, may be taken or past 65535)."""
    nodes: list[Server] = []
    try:
        for port in ports:
            nodes.append(
                start_redis_node(port, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                 "--cluster-node-timeout", "2000", "--cluster-port", str(free_port()),
                                 name="redis-cluster")
            )  # fmt: skip
        addresses = [f"127.0.0.1:{node.port}" for node in nodes]
        redis_cli(nodes[0].port, "--cluster", "create", *addresses, "--cluster-yes")
        for node in nodes:
            wait_until(
                lambda node=node: "cluster_state:ok" in redis_cli(node.port, "cluster", "info"),
                f"cluster state ok on port {node.port}",
            )
    except BaseException:
        Topology(nodes).stop()
        raise
    return Topology(nodes)


#: the service name the test sentinel watches
SENTINEL_SERVICE = "tasklock"


def start_sentinel_group(ports: list[int], service: str = SENTINEL_SERVICE) -> Topology:
    """On ``ports``: a primary, its replica and one sentinel watching them (quorum 1), so
    ``SENTINEL FAILOVER`` promotes the replica. The sentinel is ``redis-server --sentinel``
    (the same binary: no extra package)."""
    servers: list[Server] = []
    try:
        primary = start_redis_node(ports[0], name="redis-primary")
        servers.append(primary)
        replica = start_redis_node(
            ports[1], "--replicaof", "127.0.0.1", str(primary.port), name="redis-replica"
        )
        servers.append(replica)
        wait_until(
            lambda: "master_link_status:up" in redis_cli(replica.port, "info", "replication"),
            "the replica's link to its primary",
        )
        port = ports[2]
        directory = tempfile.mkdtemp(prefix="tasklock-sentinel-")
        config = os.path.join(directory, "sentinel.conf")
        with open(config, "w") as file:
            file.write(
                f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                f"sentinel monitor {service} 127.0.0.1 {primary.port} 1\n"
                f"sentinel down-after-milliseconds {service} 2000\n"
                f"sentinel failover-timeout {service} 10000\n"
            )
        binary = find_binary("redis-server", "redis-server")
        process = subprocess.Popen(
            [binary, config, "--sentinel", "--logfile", os.path.join(directory, "sentinel.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
        )  # fmt: skip
        servers.append(Server("redis-sentinel", port, process, directory))
        wait_for_port(port, process)
        wait_until(
            lambda: (
                "slave" in redis_cli(port, "sentinel", "replicas", service)
                or "replica" in redis_cli(port, "sentinel", "replicas", service)
            ),
            "the sentinel finding the replica",
        )
    except BaseException:
        Topology(servers).stop()
        raise
    return Topology(servers)
