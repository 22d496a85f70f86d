"""Per-process caches of what the request path reads most, each entry checked against the database.

What is cached, and how each read stays current:

- **connections** (by id, and the connections that route an email domain): every read first runs
  one cheap probe (``SELECT version`` by primary key; for a domain, the ids and versions of the
  active connections that route it) in the request's own transaction, and serves the cached entity
  only when its ``version`` is the one just read. Every change of a connection (status, settings,
  secrets, certificates, domains) bumps ``version``; its deletion makes the probe find nothing.
- **applications** (by client_id): the same, with the ``applications.version`` counter bumped by
  every update (secret rotation, redirect URIs, anything).
- **directories** (by id and the SHA-256 of the bearer token presented): the SCIM authentication of
  every request of a sync. The probe reads the directory's ``version`` and ``last_sync_at``; a hit
  needs the same token hash already checked against the stored one at that version. Rotating the
  token, renaming and deleting bump ``version`` or remove the row; recording a sync (``touch``)
  changes only ``last_sync_at``, which the probe returns.
- **signing keys**: which keys are active and published is read from the database on every
  request; only the decrypted private key of a kid is cached (a kid is the thumbprint of its key,
  so the key material under one kid never changes).

Outside this module, two parse caches are keyed by content and so can never be stale: the JWK Set
that verifies Keyhall's own tokens (``provider.signing``, by the published kids, read per call) and
each IdP JWK parsed for ID-token checks (``protocols.oidc.id_token``); the IdP's JWKS document is
cached by ``idp.oidc_rp.JwksCache`` (a TTL, and re-read at once when a token names an unknown kid).

So a change made through any instance (another process, another machine) is seen by every other
instance **at its next request that reads the entity** — the bound is "next request", never a
time to live. What the caches save is the work after the probe: fetching the whole row and its
domains, decrypting the sealed secrets and building the entity.

Each cache is an LRU bounded in entries and guarded by a lock (requests run on several threads).
Entities are copied in and out, so a caller changing what it got cannot change the cache: an entry
is kept pickled (``pickle.loads`` of Keyhall's own entity is several times cheaper than
``copy.deepcopy``), or as a deep copy when its value cannot be pickled. A caller that only reads
(the ``GET`` of a connection renders it and drops it) takes :meth:`VersionedCache.get_shared`
instead: one copy, made by the first such read of the entry, then the same object for every such
reader, no copy per read; it is never handed to a caller that may change it.
"""

from __future__ import annotations

import copy
import pickle
import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any, Generic, TypeVar, cast

from keyhall.core.applications import Application
from keyhall.core.connections import Connection
from keyhall.core.directories import Directory

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

CONNECTIONS_MAX = 2048
APPLICATIONS_MAX = 1024
SIGNING_KEYS_MAX = 64
DIRECTORIES_MAX = 1024


class _Pickled:
    """A cached value in pickled form: each read unpickles a fresh copy."""

    __slots__ = ("blob",)

    def __init__(self, blob: bytes):
        self.blob = blob


def _copy_in(value: object) -> object:
    try:
        return _Pickled(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
    except (pickle.PicklingError, TypeError, AttributeError):
        return copy.deepcopy(value)


def _copy_out(stored: object) -> Any:
    if isinstance(stored, _Pickled):
        return pickle.loads(stored.blob)  # noqa: S301 - only what _copy_in pickled in this process
    return copy.deepcopy(stored)


class VersionedCache(Generic[K, V]):
    """An LRU of ``key -> (version, value)``; a read names the version it requires."""

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        # key -> (version, the stored copy, a copy of it shared by read-only callers once one asked)
        self._entries: OrderedDict[K, tuple[Hashable, object, object | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: K, version: Hashable) -> V | None:
        """The value cached for ``key`` at exactly ``version`` (a copy), else None."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end(key)
            value = entry[1]
        return cast(V, _copy_out(value))

    def get_shared(self, key: K, version: Hashable) -> V | None:
        """Like :meth:`get`, without a copy: the one object every read-only caller of this entry gets.
        The caller must not change it (nor anything it holds)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry[0] != version:
                return None
            self._entries.move_to_end(key)
            shared = entry[2]
            if shared is None:
                shared = _copy_out(entry[1])
                self._entries[key] = (entry[0], entry[1], shared)
            return cast(V, shared)

    def put(self, key: K, version: Hashable, value: V) -> None:
        stored = _copy_in(value)
        with self._lock:
            self._entries[key] = (version, stored, None)
            self._entries.move_to_end(key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def discard(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


class StorageCaches:
    """The caches of one database handle (one per process: instances never share them)."""

    def __init__(self) -> None:
        self.connections: VersionedCache[str, Connection] = VersionedCache(CONNECTIONS_MAX)
        self.applications: VersionedCache[str, Application] = VersionedCache(APPLICATIONS_MAX)
        # kid -> the private key's PEM (the version is the kid itself: its material never changes)
        self.private_keys: VersionedCache[str, str] = VersionedCache(SIGNING_KEYS_MAX)
        # (directory id, SHA-256 of the token presented) -> the directory, at its version
        self.directories: VersionedCache[tuple[str, str], Directory] = VersionedCache(DIRECTORIES_MAX)

    def clear(self) -> None:
        for cache in (self.connections, self.applications, self.private_keys, self.directories):
            cache.clear()
