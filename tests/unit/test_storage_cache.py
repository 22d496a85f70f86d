"""The versioned LRU behind the storage caches: exact versions, bounded size, copies in and out."""

from __future__ import annotations

import pickle
import threading

import pytest

from keyhall.storage.cache import StorageCaches, VersionedCache


def test_an_entry_is_served_only_at_the_version_it_was_stored_with() -> None:
    cache: VersionedCache[str, list[str]] = VersionedCache(4)
    cache.put("a", 1, ["x"])
    assert cache.get("a", 1) == ["x"]
    assert cache.get("a", 2) is None
    assert cache.get("b", 1) is None
    cache.put("a", 2, ["y"])
    assert cache.get("a", 1) is None
    assert cache.get("a", 2) == ["y"]


def test_the_least_recently_used_entry_goes_first() -> None:
    cache: VersionedCache[str, int] = VersionedCache(2)
    cache.put("a", 1, 1)
    cache.put("b", 1, 2)
    assert cache.get("a", 1) == 1  # "b" is now the oldest
    cache.put("c", 1, 3)
    assert len(cache) == 2
    assert cache.get("b", 1) is None
    assert cache.get("a", 1) == 1
    assert cache.get("c", 1) == 3


def test_callers_cannot_change_what_is_cached() -> None:
    cache: VersionedCache[str, dict[str, list[str]]] = VersionedCache(2)
    value = {"uris": ["https://a.example"]}
    cache.put("k", 1, value)
    value["uris"].append("https://evil.example")
    served = cache.get("k", 1)
    assert served == {"uris": ["https://a.example"]}
    assert served is not None
    served["uris"].clear()
    assert cache.get("k", 1) == {"uris": ["https://a.example"]}


def test_a_value_that_cannot_be_pickled_is_still_copied_in_and_out() -> None:
    cache: VersionedCache[str, dict[str, object]] = VersionedCache(2)
    value: dict[str, object] = {"uris": ["https://a.example"], "when": (lambda: 1,)}  # a lambda: not picklable
    with pytest.raises((pickle.PicklingError, AttributeError)):
        pickle.dumps(value)
    cache.put("k", 1, value)
    value["uris"].append("https://evil.example")  # type: ignore[attr-defined]
    served = cache.get("k", 1)
    assert served is not None
    assert served["uris"] == ["https://a.example"]
    served["uris"].clear()  # type: ignore[attr-defined]
    assert cache.get("k", 1)["uris"] == ["https://a.example"]  # type: ignore[index]


def test_discard_and_clear() -> None:
    caches = StorageCaches()
    caches.applications.maxsize = 8
    caches.private_keys.put("kid", "kid", "pem")
    caches.connections.put("c", 1, None)  # type: ignore[arg-type]
    caches.private_keys.discard("kid")
    assert caches.private_keys.get("kid", "kid") is None
    caches.clear()
    assert len(caches.connections) == 0


def test_a_size_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="maxsize"):
        VersionedCache(0)


def test_threads_share_one_bounded_cache() -> None:
    cache: VersionedCache[int, int] = VersionedCache(16)

    def work(offset: int) -> None:
        for i in range(500):
            cache.put((i + offset) % 64, i, i)
            cache.get((i + offset) % 64, i)

    threads = [threading.Thread(target=work, args=(n * 7,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 16


def test_read_only_callers_share_one_copy_apart_from_the_callers_own() -> None:
    cache: VersionedCache[str, dict[str, list[str]]] = VersionedCache(2)
    value = {"uris": ["https://a.example"]}
    cache.put("k", 1, value)
    shared = cache.get_shared("k", 1)
    assert shared == value
    assert shared is not value
    assert cache.get_shared("k", 1) is shared  # no copy per read
    assert cache.get_shared("k", 2) is None
    value["uris"].append("https://evil.example")  # what the writer kept is not what readers share
    assert cache.get_shared("k", 1) == {"uris": ["https://a.example"]}
    mine = cache.get("k", 1)
    assert mine is not None
    assert mine is not shared
    cache.put("k", 2, {"uris": []})
    assert cache.get_shared("k", 1) is None
    assert cache.get_shared("k", 2) == {"uris": []}
