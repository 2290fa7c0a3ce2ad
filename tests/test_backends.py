"""Which adapter serves which cache, and keys made with the cache's own key function."""

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured

from tasklock import Lock
from tasklock.backends import get_backend


def test_subclass_of_a_known_backend_is_picked_by_its_base(memcached_server):
    assert get_backend("subclassed_memcached").family == "memcached"
    with Lock("subclassed", timeout=5, cache="subclassed_memcached") as held:
        assert held.owned()


def test_unknown_backend_is_refused_until_trusted(redis_server, settings):
    with pytest.raises(ImproperlyConfigured, match="TRUSTED_BACKENDS"):
        Lock("vendor", cache="vendor_redis")
    settings.TASKLOCK = {"TRUSTED_BACKENDS": {"tests.cache_backends.VendorRedisCache": "redis"}}
    with Lock("vendor", timeout=5, cache="vendor_redis") as held:
        assert held.owned()


def test_unknown_alias_names_the_setting(settings):
    settings.TASKLOCK = {"CACHE": "nope"}
    with pytest.raises(ImproperlyConfigured, match="not an alias in CACHES"):
        Lock("x")


@pytest.mark.parametrize("timeout", [0, float("inf"), float("nan"), 1e9])
def test_bad_setting_names_the_key(settings, timeout):
    """An infinite or overlong TIMEOUT used to pass, then every acquire raised OverflowError
    (or memcached stored nothing): ImproperlyConfigured when a Lock reads it."""
    settings.TASKLOCK = {"TIMEOUT": timeout}
    with pytest.raises(ImproperlyConfigured, match=r'TASKLOCK\["TIMEOUT"\]'):
        Lock("x")


def test_keys_use_the_caches_prefix_version_and_tasklock_namespace(redis_server, settings):
    settings.TASKLOCK = {"KEY_PREFIX": "locks"}
    client = redis.Redis(port=redis_server.port)
    with Lock("report:42", timeout=5, cache="prefixed"):
        assert client.exists("app:3:locks:report:42")
    assert not client.exists("app:3:locks:report:42")


def test_changed_caches_give_new_adapters(redis_server, settings):
    """Adapters are kept per thread; a changed CACHES must not leave a thread on the old one."""
    before = get_backend("prefixed")
    assert get_backend("prefixed") is before
    settings.CACHES = {**settings.CACHES, "prefixed": {**settings.CACHES["prefixed"], "KEY_PREFIX": "other"}}
    assert get_backend("prefixed") is not before
    assert get_backend("prefixed").key("x").startswith("other:")


def test_a_changed_tasklock_setting_is_read_again(redis_server, settings):
    assert Lock("x", cache="default").timeout == 60
    settings.TASKLOCK = {"TIMEOUT": 7}
    assert Lock("x", cache="default").timeout == 7
