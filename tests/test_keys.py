"""Lock names from arguments, canonical text, and cache keys."""

import datetime
import decimal
import enum
import inspect
import uuid

import pytest
from django.contrib.auth.models import Group

from tasklock import Lock, LockError, task_lock
from tasklock.keys import NameBuilder, cache_key, canonical_text


def update_game(game_id, force=False):
    return game_id


def name_for(key, *args, **kwargs):
    signature = inspect.signature(update_game)
    call = signature.bind(*args, **kwargs)
    call.apply_defaults()
    return NameBuilder(key, signature).name("T", call.arguments, args, kwargs)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (None, 'T:{"force":true,"game_id":3}'),
        ((), "T"),
        ("game_id", "T:3"),
        (("game_id", "force"), "T:[3,true]"),
        ("game:{game_id}", "game:3"),
        ("nightly-report", "nightly-report"),
        (lambda game_id, force=False: f"custom-{game_id}", "custom-3"),
    ],
)
def test_name_table(key, expected):
    assert name_for(key, 3, force=True) == expected


def test_defaults_are_applied():
    assert name_for(None, 3) == 'T:{"force":false,"game_id":3}'


class Colour(enum.Enum):
    RED = "red"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("a b", "a b"),
        (3, "3"),
        (1.5, "1.5"),
        (True, "true"),
        (None, "null"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (decimal.Decimal("1.10"), "1.10"),
        (datetime.date(2026, 1, 2), "2026-01-02"),
        (datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC), "2026-01-02T03:04:05+00:00"),
        (Colour.RED, "red"),
        ([1, "a"], '[1,"a"]'),
        ((1, 2), "[1,2]"),
        ({"b": 1, "a": [2]}, '{"a":[2],"b":1}'),
        ({3, 1, 2}, "[1,2,3]"),
        (Group(pk=7, name="x"), "auth.group:7"),
    ],
)
def test_canonical_text(value, text):
    assert canonical_text(value) == text


def test_sets_sort_the_same_whatever_the_hash_seed():
    """Same arguments, same name in every process: run the canonical text under other seeds."""
    import os
    import subprocess
    import sys

    code = "from tasklock.keys import canonical_text; print(canonical_text({'b','a','c',('x',1)}))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": str(seed)},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for seed in (1, 2, 3)
    }
    assert len(outputs) == 1


def test_uncanonical_argument_is_a_lock_error_naming_it():
    with pytest.raises(LockError, match=r"'game_id'.*object"):
        name_for(None, object())
    with pytest.raises(LockError, match="'game_id'"):
        name_for("game_id", object())
    with pytest.raises(LockError, match="'force'"):
        name_for(("game_id", "force"), 1, force=object())


def test_callable_must_return_str():
    with pytest.raises(LockError, match="not a str"):
        name_for(lambda game_id, force=False: game_id, 3)


@pytest.mark.parametrize("key", ["gameid", "game:{gameid}", ("game_id", "nope"), 3])
def test_bad_keys_refused_at_decoration(key):
    with pytest.raises(TypeError):
        task_lock(key)(update_game)


def test_template_fields_must_be_plain():
    with pytest.raises(TypeError, match="plain"):
        task_lock("game:{game_id!r}")(update_game)


def test_long_or_spaced_names_are_hashed_into_the_key():
    def make_key(raw):
        return f":1:{raw}"

    assert cache_key("short", "tasklock", make_key) == ":1:tasklock:short"
    for name in ("x" * 300, "with space", "tab\there", "#looks-hashed"):
        key = cache_key(name, "tasklock", make_key)
        assert key.startswith(":1:tasklock:#") and len(key) < 100


def test_ten_kilobyte_argument_gives_a_working_key_on_memcached(memcached_server):
    @task_lock(key="payload", cache="memcached", on_locked="raise")
    def work(payload):
        assert Lock(f"{__name__}.{work.__qualname__}:{payload}", cache="memcached").locked()
        return len(payload)

    assert work("x" * 10_000) == 10_000
