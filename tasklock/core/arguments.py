"""Checks of the arguments every face takes: ``ValueError`` (``TypeError`` for a cache that is
no alias) naming the argument and what it got."""

from __future__ import annotations

from ..backends.base import LockBackend
from ..conf import MAX_TIMEOUT, conf, timeout_problem
from ..exceptions import shown


def lock_name(name: object) -> str:
    """``name`` as a lock name: a non-empty str."""
    if not isinstance(name, str) or not name:
        got = shown(name) if isinstance(name, str) else type(name).__name__
        raise ValueError(f"a lock name must be a non-empty str, got {got}")
    return name


def key_of(backend: LockBackend, name: str) -> str:
    """The cache key of lock ``name``; making it encodes the name, which only a lone surrogate
    makes fail."""
    try:
        return backend.key(name)
    except UnicodeEncodeError:
        where = next(at for at, char in enumerate(name) if "\ud800" <= char <= "\udfff")
        raise ValueError(
            f"lock name {shown(name)} has a lone surrogate {name[where]!r} at position {where}: "
            "a name must be text that UTF-8 can encode"
        ) from None


def renew_flag(renew: object, timeout: float, shortest: float) -> bool:
    """``renew`` as a flag; a renewing lock needs a lease of at least ``shortest`` seconds."""
    if not isinstance(renew, bool):
        raise ValueError(f"renew must be True or False, got {renew!r}")
    if renew and timeout < shortest:
        raise ValueError(f"a renewing lock needs a timeout of at least {shortest} s, got {timeout!r}")
    return renew


def fair_flag(fair: object, backend: LockBackend, alias: str) -> bool:
    """``fair`` as a flag; fairness needs a backend that hands the lock over in line."""
    if not isinstance(fair, bool):
        raise ValueError(f"fair must be True or False, got {fair!r}")
    if fair and not backend.hands_over:
        raise ValueError(
            f"fair=True needs a cache whose release hands the lock to the next waiter in line "
            f"(Redis); cache {alias!r} ({type(backend.cache).__name__}) has waiters poll, so it "
            "cannot serve them in order"
        )
    return fair


def holder_limit(limit: object) -> int:
    """``limit`` as how many holders a name may have at once: an int >= 1."""
    if type(limit) is not int or limit < 1:
        raise ValueError(f"limit must be an int >= 1 (how many may hold the name at once), got {limit!r}")
    return limit


def seconds(value: object, what: str) -> float:
    """``value`` as a lock timeout (finite, > 0, at most ``MAX_TIMEOUT``), else ``ValueError``."""
    if (type(value) is float or type(value) is int) and 0 < value <= MAX_TIMEOUT:  # the usual case
        return float(value)
    if problem := timeout_problem(value):
        raise ValueError(f"{what} {problem}, got {value!r}")
    return float(value)  # type: ignore[arg-type]


def cache_alias(cache: object) -> str:
    """``cache`` as a cache alias; None means ``TASKLOCK["CACHE"]``."""
    if cache is None:
        return conf.CACHE
    if not isinstance(cache, str) or not cache:
        error = TypeError if not isinstance(cache, str) else ValueError
        raise error(f"cache must be a cache alias (a str naming an entry of CACHES), got {cache!r:.100}")
    return cache


def wait_seconds(blocking: bool, wait: object) -> None:
    """``ValueError`` unless ``wait`` (not None) fits ``blocking``: seconds >= 0 (inf: no
    limit) for a blocking acquire."""
    if not blocking:
        raise ValueError("wait= needs blocking=True; a non-blocking acquire tries once")
    if not isinstance(wait, int | float) or isinstance(wait, bool) or not wait >= 0:
        raise ValueError(f"wait must be a number of seconds >= 0 (inf: no limit), got {wait!r}")
