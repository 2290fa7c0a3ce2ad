"""How long ``locks list --json`` takes with 1,000 / 10,000 / 100,000 held locks, and one
admin changelist page with 100,000: ``python -m bench.listing``.

Starts its own Redis and memcached (tests/servers.py) on free loopback ports. The locks are
written straight through each adapter's client, with the values and keys ``Lock.acquire``
writes (on memcached, the index entry too), so that filling 100,000 takes seconds.
Target: 10,000 locks list in under 1 s on Redis; the exit status is 1 when it is missed.
"""

from __future__ import annotations

import io
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable

import django
from django.conf import settings

from tests.servers import free_port, start_memcached, start_redis

SIZES = (1_000, 10_000, 100_000)
BACKENDS = {"default": "Redis (django-redis)", "memcached": "memcached (PyMemcacheCache)"}
TARGET_SECONDS = 1.0
WRITE_BATCH = 1000


def configure(redis: str, memcached: str) -> None:
    settings.configure(
        SECRET_KEY="tasklock-bench-listing",
        USE_TZ=True,
        ROOT_URLCONF="tests.urls",
        INSTALLED_APPS=[
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "tasklock",
        ],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        TEMPLATES=[
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
            }
        ],
        CACHES={
            "default": {"BACKEND": "django_redis.cache.RedisCache", "LOCATION": f"redis://{redis}/0"},
            "memcached": {
                "BACKEND": "django.core.cache.backends.memcached.PyMemcacheCache",
                "LOCATION": memcached,
            },
        },
        TASKLOCK={"KEY_PREFIX": "bench-listing"},
    )
    django.setup()


def fill(alias: str, first: int, last: int) -> None:
    """Hold locks ``first`` to ``last - 1`` in ``alias``, as ``Lock.acquire`` would store them."""
    from tasklock.backends import get_backend
    from tasklock.values.holder import Holder

    backend = get_backend(alias)
    now = time.time()
    for start in range(first, last, WRITE_BATCH):
        holders = [
            Holder.here(
                f"{n:032x}", f"bench.tasks.update_game:{n}", now, 3600, "bench.tasks.update_game", f"{n}"
            )
            for n in range(start, min(start + WRITE_BATCH, last))
        ]
        values = {backend.key(holder.name): holder.encode() for holder in holders}
        if alias == "memcached":
            backend.client.set_many({key: value.encode() for key, value in values.items()}, expire=3600)
            for key in values:
                backend.index.note(key)
        else:
            pipe = backend.client.pipeline(transaction=False)
            for key, value in values.items():
                pipe.set(key, value, px=3_600_000)
            pipe.execute()


def seconds(run: Callable[[], object], repeat: int) -> float:
    """The median wall time of ``repeat`` runs."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def list_json(alias: str, expected: int) -> Callable[[], None]:
    from django.core.management import call_command

    def run() -> None:
        out = io.StringIO()
        call_command("locks", "list", json=True, cache=alias, stdout=out)
        listed = out.getvalue().count('"name":')
        assert listed == expected, f"listed {listed} locks, expected {expected}"

    return run


def admin_page(alias: str, query: str = "") -> Callable[[], int]:
    """One changelist request, as a superuser, rendered; returns the rows shown."""
    from django.contrib.admin import site
    from django.contrib.auth.models import AnonymousUser, User
    from django.contrib.messages.storage.fallback import FallbackStorage
    from django.test import RequestFactory, override_settings

    from tasklock.models import HeldLock

    def run() -> int:
        request = RequestFactory().get("/admin/tasklock/heldlock/", {"q": query} if query else {})
        request.user = User(username="bench", is_staff=True, is_superuser=True, is_active=True)
        request.session = {}
        request._messages = FallbackStorage(request)
        assert not isinstance(request.user, AnonymousUser)
        with override_settings(TASKLOCK={"CACHE": alias, "KEY_PREFIX": "bench-listing"}):
            response = site._registry[HeldLock].changelist_view(request)
            response.render()
        return len(response.context_data["cl"].result_list)

    return run


def peak_mib(run: Callable[[], object]) -> float:
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def main() -> int:
    redis = start_redis(free_port())
    memcached = start_memcached(free_port())
    try:
        configure(f"127.0.0.1:{redis.port}", f"127.0.0.1:{memcached.port}")
        timings: dict[str, list[float]] = {alias: [] for alias in BACKENDS}
        for alias in BACKENDS:
            held = 0
            for size in SIZES:
                fill(alias, held, size)
                held = size
                timings[alias].append(seconds(list_json(alias, size), 3 if size < 100_000 else 2))
        versions = f"Python {sys.version.split()[0]}, Django {django.__version__}"
        print(f"\n`locks list --json`, median wall time ({versions})")
        print(f"{'backend':<30}" + "".join(f"{size:>12,}" for size in SIZES))
        for alias, label in BACKENDS.items():
            print(f"{label:<30}" + "".join(f"{value:>11.3f}s" for value in timings[alias]))
        print("\nAdmin changelist with 100,000 held locks (one page of 100, rendered):")
        for alias, label in BACKENDS.items():
            page = admin_page(alias)
            search = admin_page(alias, "UPDATE_GAME:9999")
            print(
                f"  {label:<30} page {seconds(page, 3):.3f}s, search {seconds(search, 3):.3f}s "
                f"({search()} rows), Python heap peak {peak_mib(page):.1f} MiB"
            )
        full = peak_mib(list_json("default", 100_000))
        print(f"  for comparison, `locks list --json` of all 100,000 peaks at {full:.1f} MiB")
        redis_10k = timings["default"][SIZES.index(10_000)]
        met = redis_10k < TARGET_SECONDS
        print(
            f"\nTarget: 10,000 locks listed in < {TARGET_SECONDS:g} s on Redis: {redis_10k:.3f} s, "
            f"{'met' if met else 'MISSED'}"
        )
        return 0 if met else 1
    finally:
        redis.stop()
        memcached.stop()


if __name__ == "__main__":
    sys.exit(main())
