"""The holder JSON written on every acquire: its per-thread and per-process parts."""

import json
import os
import threading

import pytest

from tasklock.values.holder import Holder


def written(thread_name: str | None = None) -> dict:
    """The holder JSON ``encode_here`` writes (in a thread named ``thread_name``), decoded."""
    found = {}

    def encode() -> None:
        found["raw"] = Holder.encode_here("t0k", "name", 1000.5, 30.0, "task", "id")

    if thread_name is None:
        encode()
    else:
        thread = threading.Thread(target=encode, name=thread_name)
        thread.start()
        thread.join()
    return json.loads(found["raw"])


def test_encode_here_writes_what_holder_here_encodes():
    value = Holder.encode_here("t0k", "name", 1000.5, 30.0, "task", "id")
    assert value == Holder.here("t0k", "name", 1000.5, 30.0, "task", "id").encode()
    assert value == json.dumps(json.loads(value), separators=(",", ":"), ensure_ascii=False)


def test_each_thread_writes_its_own_name_even_when_renamed():
    assert written("first")["thread"] == "first"
    assert written("second")["thread"] == "second"
    current = threading.current_thread()
    old = current.name
    try:
        current.name = "renamed"
        assert written()["thread"] == "renamed"
    finally:
        current.name = old


@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_writes_its_own_pid():
    """The child only encodes, writes to a pipe and exits: no lock of another thread is needed."""
    assert written()["pid"] == os.getpid()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        try:
            os.write(write, json.dumps(written()).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        holder = json.loads(pipe.read())
    os.waitpid(child, 0)
    assert holder["pid"] == child != os.getpid()
