"""Cache backends for the adapter-selection tests."""

from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.memcached import PyMemcacheCache
from django.core.cache.backends.redis import RedisCacheClient


class SubclassedMemcache(PyMemcacheCache):
    """A subclass of a known backend: picked by its base class."""


class VendorRedisCache(BaseCache):
    """A backend tasklock does not know, speaking Django's Redis client underneath."""

    def __init__(self, server, params):
        super().__init__(params)
        self._cache = RedisCacheClient([server])
