"""Lock names from arguments, canonical text, and cache keys."""

import datetime
import decimal
import enum
import inspect
import json
import re
import uuid

import pytest
from django.contrib.auth.models import Group

from tasklock import Lock, LockError, task_lock
from tasklock.integrations.naming import NameBuilder, canonical_arguments, canonical_text
from tasklock.values.names import cache_key


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
        (decimal.Decimal("1.10"), "1.1"),
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

    code = (
        "from tasklock.integrations.naming import canonical_text; "
        "print(canonical_text({'b','a','c',('x',1)}))"
    )
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


class Region(str, enum.Enum):  # noqa: UP042 - the mixed-in form whose str() is "Region.EU"
    EU = "eu"


class Level(enum.IntEnum):
    HIGH = 3


class Label(str):
    def __str__(self):
        return "label-object"

    def __format__(self, spec):
        return "label-object"


@pytest.mark.parametrize(
    ("mixed", "plain"),
    [(Region.EU, "eu"), (Level.HIGH, 3), (Label("eu"), "eu")],
    ids=["str-enum", "int-enum", "str-subclass"],
)
@pytest.mark.parametrize("key", [None, "game_id", ("game_id", "force"), "game:{game_id}"])
def test_mixed_in_enums_and_subclasses_name_as_their_plain_value(key, mixed, plain):
    """Region.EU == "eu": the same lock, in every key form (issue 9, item 1)."""
    assert mixed == plain
    assert name_for(key, mixed) == name_for(key, plain)


@pytest.mark.parametrize(
    "equal",
    [
        (1, 1.0),
        (0, 0.0, -0.0),
        (10**20, 1e20),
        (decimal.Decimal("1.0"), decimal.Decimal("1.00"), decimal.Decimal("1"), decimal.Decimal("1E+0")),
        (decimal.Decimal("100"), decimal.Decimal("1E+2"), decimal.Decimal("100.000")),
        (decimal.Decimal("0"), decimal.Decimal("-0.00"), decimal.Decimal("0E-5")),
        (
            datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC),
            datetime.datetime(2026, 1, 2, 4, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
            datetime.datetime(2026, 1, 1, 22, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=-5))),
        ),
        ([1, 1.0], [1.0, 1]),
        ({"a": 2.0}, {"a": 2}),
        ({1.0, 2}, {1, 2.0}),
    ],
    ids=repr,
)
@pytest.mark.parametrize("key", [None, "game_id", ("game_id", "force"), "game:{game_id}"])
def test_equal_arguments_give_equal_names(key, equal):
    """Values that compare equal (and are one dict key) share a name (issue 9, item 5)."""
    assert all(value == equal[0] for value in equal)
    assert len({name_for(key, value) for value in equal}) == 1


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "1"),
        (-0.0, "0"),
        (2.5, "2.5"),
        (1e20, "100000000000000000000"),
        (decimal.Decimal("1.00"), "1"),
        (decimal.Decimal("1E+2"), "100"),
        (decimal.Decimal("-0.0"), "0"),
        (decimal.Decimal("1.2345678901234567890123456789012345"), "1.2345678901234567890123456789012345"),
        (decimal.Decimal("NaN"), "NaN"),
        (
            datetime.datetime(2026, 1, 2, 4, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
            "2026-01-02T03:04:05+00:00",
        ),
        (datetime.datetime(2026, 1, 2, 4, 4, 5), "2026-01-02T04:04:05"),
    ],
)
def test_canonical_forms_of_numbers_and_instants(value, text):
    assert canonical_text(value) == text


def test_decimal_text_does_not_depend_on_the_decimal_context():
    """normalize() rounds to the thread's context precision: two processes could disagree."""
    value = decimal.Decimal("1.23456789012345678901234567890100")
    with decimal.localcontext(prec=5):
        assert canonical_text(value) == "1.234567890123456789012345678901"


NAIVE = datetime.datetime(2026, 1, 2, 3, 4, 5)


@pytest.mark.parametrize(
    ("unequal", "texts"),
    [
        ((True, 1), ("true", "1")),
        ((False, 0), ("false", "0")),
        (
            (NAIVE, NAIVE.replace(tzinfo=datetime.UTC)),
            ("2026-01-02T03:04:05", "2026-01-02T03:04:05+00:00"),
        ),
    ],
)
def test_where_equal_names_stop(unequal, texts):
    """A bool is not an int for a lock name; naive and aware datetimes stay apart."""
    assert tuple(canonical_text(value) for value in unequal) == texts


def test_an_unsaved_model_instance_is_refused_naming_the_argument():
    """Every unsaved instance would share one 'auth.group:null' lock."""
    with pytest.raises(LockError, match=r"'game_id'.*unsaved auth\.group"):
        name_for("game_id", Group(name="x"))
    with pytest.raises(LockError, match=r"'game_id'.*unsaved"):
        name_for(None, Group(name="x"))


def test_a_model_class_is_refused_naming_the_argument():
    with pytest.raises(LockError, match=r"'game_id'.*model class auth\.group.*not a value"):
        name_for("game_id", Group)
    with pytest.raises(LockError, match=r"'force'.*model class"):
        name_for(("game_id", "force"), 1, force=Group)


@pytest.mark.parametrize("returned", ["", None, 3])
def test_callable_must_return_a_non_empty_str_naming_the_callable(returned):
    def key_of_game(game_id, force=False):
        return returned

    with pytest.raises(LockError, match=r"key_of_game.*returned"):
        name_for(key_of_game, 3)


def test_a_template_that_renders_empty_is_a_lock_error():
    with pytest.raises(LockError, match=r"'\{game_id\}'.*empty"):
        name_for("{game_id}", "")


SIMPLE_VALUES = ["", 'a"b\\c', "naïve 😀", "\x00\x1f\u2028", 0, -(10**30), 7, True, False, None]


@pytest.mark.parametrize("value", SIMPLE_VALUES)
def test_simple_values_are_written_as_json_dumps_writes_them(value):
    """str, int, bool and None skip json.dumps: the names must stay byte-identical."""
    dumped = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_text(value) == (value if isinstance(value, str) else dumped)
    arguments = {"z": value, "a": value, "é": 1}
    expected = json.dumps(arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert canonical_arguments(arguments) == expected


def keywords_and_more(a, b=2, *rest, c, d=4, **more):
    return a


def positional_only(a, /, b=2):
    return a


@pytest.mark.parametrize(
    ("fn", "args", "kwargs"),
    [
        (update_game, (3,), {}),
        (update_game, (3, True), {}),
        (update_game, (), {"game_id": 3}),
        (update_game, (), {"force": 1, "game_id": 3}),
        (update_game, (3,), {"force": None}),
        (update_game, (3,), {"game_id": 4}),  # repeated
        (update_game, (3,), {"nope": 1}),  # unknown
        (update_game, (), {}),  # missing
        (update_game, (1, 2, 3), {}),  # too many
        (keywords_and_more, (1, 2, 3), {"c": 5, "e": 6}),
        (keywords_and_more, (1,), {}),  # c missing
        (positional_only, (1,), {"b": 3}),
        (positional_only, (), {"a": 1}),  # positional-only passed by name
    ],
)
def test_bind_is_signature_bind(fn, args, kwargs):
    """The decorator's fast binding gives what Signature.bind + apply_defaults give, in the same
    order, and raises the same TypeError."""
    signature = inspect.signature(fn)
    try:
        call = signature.bind(*args, **kwargs)
    except TypeError as exc:
        with pytest.raises(TypeError, match=f"^{re.escape(str(exc))}$"):
            NameBuilder(None, signature).bind(args, kwargs)
        return
    call.apply_defaults()
    bound = NameBuilder(None, signature).bind(args, kwargs)
    assert list(bound.items()) == list(call.arguments.items())
