"""Customer profile stores: each customer's recent validated events, kept by the service.

Callers of ``/score`` know a customer id and the latest events, not the whole history, so
the service keeps it: ``POST /events`` appends, ``/score`` reads, ``DELETE
/customers/{id}`` erases (:mod:`journey_ml.serving.profile_events` handles the requests).

A profile is one value per customer: the customer's events in time order, encoded with
msgspec's MessagePack (compact, decoded straight into :class:`StoredEvent` structs). A read
of any number of customers is one round trip (one ``SELECT ... IN`` on SQLite, one
``MGET`` on Redis); an append reads, merges and writes the touched profiles in one
transaction, so concurrent writers (worker processes, replicas) never lose an event.

Backends, chosen by ``JOURNEY_ML_PROFILES`` (:func:`open_store`):

* a directory (the default, ``profiles``): SQLite in WAL mode, ``profiles.sqlite3`` in
  it; readers never block the writer, writers of several processes take turns
  (``BEGIN IMMEDIATE`` with a busy timeout). Reads never create the file.
* ``redis://host:port/db``: Redis, for several replicas; appends are optimistic
  ``WATCH``/``MULTI`` transactions, retried when another writer touched the same profile.

What is kept (:func:`merge_events`): replays are dropped (same ``event_id``, or an exact
duplicate: same time, type, channel, revenue, session id, event id and properties, the
rule of :mod:`journey_ml.ingest.validate`); events older than the model's longest look-back
(:func:`history_days`) before the customer's newest event are pruned, and a profile holds
at most ``max_events`` (the newest ones).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from journey_ml.exceptions import ConfigError, JourneyMLError

if TYPE_CHECKING:
    from journey_ml.features.spec import FeatureSpec

__all__ = [
    "FORMAT_VERSION",
    "REDIS_PREFIX",
    "AppendResult",
    "ProfileStore",
    "RedisStore",
    "SQLiteStore",
    "StoreUnavailable",
    "StoredEvent",
    "history_days",
    "merge_events",
    "open_store",
    "store_for",
]

#: Version of the stored encoding (:class:`StoredEvent`): part of the Redis key prefix and
#: the SQLite table name, so a new layout starts from empty profiles instead of misreading.
FORMAT_VERSION = 1
#: Key prefix of the profiles in Redis (one key per customer).
REDIS_PREFIX = f"journey_ml:profile:v{FORMAT_VERSION}:"
_NS_PER_DAY = 86_400 * 10**9
#: SQLite's default limit of bound parameters per statement is 32766; stay well below.
_SQL_CHUNK = 900

Scalar = str | int | float | bool | None


class StoreUnavailable(JourneyMLError, RuntimeError):
    """The profile store cannot be read or written now (server down, disk full, contention)."""


class StoredEvent(msgspec.Struct, array_like=True, frozen=True):
    """One validated event in canonical values (as :func:`journey_ml.ingest.validate_events`
    gives them): ``ts`` in ns since the epoch (UTC), channel ``"unknown"`` and revenue 0 when
    absent, ``session_id`` only when the caller gave one (derived sessions depend on the
    neighbouring events, so they are derived again when scoring), friction measures as
    floats (None when absent) and other properties as sent."""

    ts: int
    event_type: str
    channel: str
    revenue: float
    session_id: str | None = None
    event_id: str | None = None
    props: dict[str, Scalar] | None = None

    def identity(self) -> tuple[Any, ...]:
        """What makes two events exact duplicates (every field, properties included)."""
        props = tuple(sorted(self.props.items())) if self.props else ()
        return (self.ts, self.event_type, self.channel, self.revenue, self.session_id, self.event_id, props)


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(list[StoredEvent])


@dataclass(frozen=True)
class AppendResult:
    """Outcome of :meth:`ProfileStore.append`: new events now held, replays ignored, and
    events (held or new) dropped because they lie beyond the look-back or the cap."""

    accepted: int = 0
    duplicates: int = 0
    pruned: int = 0

    def __add__(self, other: AppendResult) -> AppendResult:
        return AppendResult(self.accepted + other.accepted, self.duplicates + other.duplicates, self.pruned + other.pruned)


def history_days(spec: FeatureSpec) -> float:
    """How far back (days before a customer's newest event) a profile keeps events.

    The longest window the features count over (``spec.windows``, the 90-day counts) or
    the journey map's ``inactivity_days`` (the activity rule), whichever is longer.
    Features that count over all history (totals, tenure, first channel) therefore see
    at most this much of a stored profile.
    """
    return float(max(*spec.windows, spec.journey_map.inactivity_days))


def merge_events(
    stored: Sequence[StoredEvent], new: Sequence[StoredEvent], *, keep_ns: int, max_events: int
) -> tuple[list[StoredEvent], AppendResult]:
    """``stored`` plus the events of ``new`` that are no replays, pruned, in time order.

    A new event is a replay when its ``event_id`` is already held, or when it is an exact
    duplicate of a held event (:meth:`StoredEvent.identity`); the first copy wins. Events
    at or before ``newest - keep_ns`` go, then all but the newest ``max_events``. The sort
    is stable: events at the same time keep their arrival order, as validation keeps
    input order.
    """
    ids = {e.event_id for e in stored if e.event_id is not None}
    keys = {e.identity() for e in stored}
    merged = list(stored)
    added: set[int] = set()  # id() of the new events taken
    duplicates = 0
    for event in new:
        key = event.identity()
        if (event.event_id is not None and event.event_id in ids) or key in keys:
            duplicates += 1
            continue
        keys.add(key)
        if event.event_id is not None:
            ids.add(event.event_id)
        merged.append(event)
        added.add(id(event))
    if added:
        merged.sort(key=lambda e: e.ts)
    before = len(merged)
    if merged:
        cut = merged[-1].ts - keep_ns
        if merged[0].ts <= cut:
            merged = [e for e in merged if e.ts > cut]
    merged = merged[-max_events:]
    accepted = sum(id(e) in added for e in merged) if added else 0
    return merged, AppendResult(accepted, duplicates, before - len(merged))


class ProfileStore(ABC):
    """A profile store: read many customers in one round trip, append, erase.

    Every backend failure (connection refused, disk full, lock timeout) surfaces as
    :class:`StoreUnavailable`, which the service answers with 503.
    """

    location: str
    #: The backend's own exceptions, turned into StoreUnavailable.
    errors: tuple[type[BaseException], ...] = (OSError,)

    def load(self, customer_ids: Sequence[str]) -> list[list[StoredEvent]]:
        """Each customer's stored events in time order (``[]`` when there is no profile)."""
        try:
            blobs = self._get(list(customer_ids))
        except self.errors as exc:
            raise StoreUnavailable(f"profile store {self.location} cannot be read: {exc}") from exc
        try:
            return [_DECODER.decode(b) if b else [] for b in blobs]
        except msgspec.DecodeError as exc:
            raise StoreUnavailable(f"profile store {self.location} holds a profile this version cannot read: {exc}") from exc

    def erase(self, customer_id: str) -> bool:
        """Delete a customer's profile; True when there was one."""
        try:
            return self._erase(customer_id)
        except self.errors as exc:
            raise StoreUnavailable(f"profile store {self.location} cannot be written: {exc}") from exc

    def append(
        self, events: Mapping[str, Sequence[StoredEvent]], *, keep_days: float, max_events: int
    ) -> AppendResult:
        """Merge each customer's new events into their profile, atomically for the whole batch.

        ``keep_days``: see :func:`history_days`; ``max_events``: events per profile at most.
        """
        keep_ns = round(keep_days * _NS_PER_DAY)
        ids = list(events)
        if not ids:
            return AppendResult()

        def merge(blobs: list[bytes | None]) -> tuple[dict[str, bytes], AppendResult]:
            total = AppendResult()
            out: dict[str, bytes] = {}
            for cid, blob in zip(ids, blobs, strict=True):
                held = _DECODER.decode(blob) if blob else []
                merged, result = merge_events(held, events[cid], keep_ns=keep_ns, max_events=max_events)
                total = total + result
                if result.accepted or result.pruned:
                    out[cid] = _ENCODER.encode(merged)
            return out, total

        try:
            return self._transact(ids, merge)
        except (*self.errors, msgspec.DecodeError) as exc:
            raise StoreUnavailable(f"profile store {self.location} cannot be written: {exc}") from exc

    @abstractmethod
    def _erase(self, customer_id: str) -> bool:
        """Delete a profile (backend part of :meth:`erase`)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections."""

    @abstractmethod
    def _get(self, customer_ids: list[str]) -> list[bytes | None]:
        """The encoded profiles of ``customer_ids`` (None where absent), in one round trip."""

    @abstractmethod
    def _transact(
        self, customer_ids: list[str], merge: Callable[[list[bytes | None]], tuple[dict[str, bytes], AppendResult]]
    ) -> AppendResult:
        """Read the profiles, let ``merge`` compute the new values, write them: atomically."""


class SQLiteStore(ProfileStore):
    """Profiles in ``<directory>/profiles.sqlite3`` (WAL mode, one connection per thread).

    Erasure overwrites the deleted content (``secure_delete``) and checkpoints the WAL, so
    an erased profile does not linger in the database files.
    """

    FILENAME = "profiles.sqlite3"
    TABLE = f"profiles_v{FORMAT_VERSION}"
    errors = (sqlite3.Error, OSError)

    def __init__(self, directory: str | Path, *, timeout: float = 10.0) -> None:
        self.directory = Path(directory)
        self.path = self.directory / self.FILENAME
        self.location = str(self.directory)
        self.timeout = timeout
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []

    def _conn(self, *, create: bool) -> sqlite3.Connection | None:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn  # (a connection inherited through fork is never used)
        if not create and not self.path.exists():
            return None  # nothing stored yet: reads answer "no profile" without creating files
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self.TABLE} (customer_id TEXT PRIMARY KEY, events BLOB NOT NULL) WITHOUT ROWID"
        )
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._lock:
            self._conns.append(conn)
        return conn

    def _select(self, conn: sqlite3.Connection, ids: list[str]) -> list[bytes | None]:
        found: dict[str, bytes] = {}
        for k in range(0, len(ids), _SQL_CHUNK):
            part = ids[k : k + _SQL_CHUNK]
            marks = ",".join("?" * len(part))
            found.update(conn.execute(f"SELECT customer_id, events FROM {self.TABLE} WHERE customer_id IN ({marks})", part))
        return [found.get(cid) for cid in ids]

    def _get(self, customer_ids: list[str]) -> list[bytes | None]:
        conn = self._conn(create=False)
        if conn is None or not customer_ids:
            return [None] * len(customer_ids)
        if len(customer_ids) == 1:
            row = conn.execute(f"SELECT events FROM {self.TABLE} WHERE customer_id = ?", customer_ids).fetchone()
            return [row[0] if row else None]
        return self._select(conn, customer_ids)

    def _transact(
        self, customer_ids: list[str], merge: Callable[[list[bytes | None]], tuple[dict[str, bytes], AppendResult]]
    ) -> AppendResult:
        conn = self._conn(create=True)
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")  # the write lock first: no lost update between processes
        try:
            out, result = merge(self._select(conn, customer_ids))
            conn.executemany(f"INSERT OR REPLACE INTO {self.TABLE} (customer_id, events) VALUES (?, ?)", out.items())
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return result

    def _erase(self, customer_id: str) -> bool:
        conn = self._conn(create=False)
        if conn is None:
            return False
        gone = conn.execute(f"DELETE FROM {self.TABLE} WHERE customer_id = ?", (customer_id,)).rowcount > 0
        if gone:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # best effort while others read
        return gone

    def close(self) -> None:
        with self._lock:
            for conn in self._conns:
                conn.close()
            self._conns.clear()
        self._local = threading.local()


class RedisStore(ProfileStore):
    """Profiles in Redis, one key per customer (``REDIS_PREFIX + customer_id``).

    Parameters
    ----------
    client : redis.Redis
        A connected client (thread-safe; it pools connections). Unit tests pass fakeredis.
    retries : int
        Attempts of an append whose profiles another writer changed meanwhile.
    """

    def __init__(self, client: Any, *, location: str = "redis", retries: int = 50) -> None:
        import redis

        self.errors = (redis.RedisError, OSError)
        self.client = client
        self.location = location
        self.retries = retries

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        """A store on the server of ``url`` (``redis://host:port/db``)."""
        import redis

        return cls(redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0), location=url)

    def _get(self, customer_ids: list[str]) -> list[bytes | None]:
        if not customer_ids:
            return []
        values: list[bytes | None] = self.client.mget([REDIS_PREFIX + c for c in customer_ids])
        return values

    def _transact(
        self, customer_ids: list[str], merge: Callable[[list[bytes | None]], tuple[dict[str, bytes], AppendResult]]
    ) -> AppendResult:
        import redis

        keys = [REDIS_PREFIX + c for c in customer_ids]
        with self.client.pipeline() as pipe:
            for _ in range(self.retries):
                try:
                    pipe.watch(*keys)
                    out, result = merge(pipe.mget(keys))
                    pipe.multi()
                    if out:
                        pipe.mset({REDIS_PREFIX + c: v for c, v in out.items()})
                    pipe.execute()
                    return result
                except redis.WatchError:
                    continue
        raise StoreUnavailable(f"profiles of {len(keys)} customers kept changing; append gave up after {self.retries} tries")

    def _erase(self, customer_id: str) -> bool:
        return bool(self.client.delete(REDIS_PREFIX + customer_id))

    def close(self) -> None:
        self.client.close()


def open_store(location: str) -> ProfileStore:
    """The store ``JOURNEY_ML_PROFILES`` names: ``redis://``/``rediss://``/``unix://`` URLs
    are Redis, anything else a directory for SQLite."""
    location = location.strip()
    if not location:
        raise ConfigError("must be a directory or a redis:// URL, got ''", key="JOURNEY_ML_PROFILES")
    if location.startswith(("redis://", "rediss://", "unix://")):
        try:
            return RedisStore.from_url(location)
        except ValueError as exc:
            raise ConfigError(f"is not a usable Redis URL ({exc})", key="JOURNEY_ML_PROFILES") from exc
    return SQLiteStore(location)


_STORES: dict[str, ProfileStore] = {}
_STORES_LOCK = threading.Lock()


def store_for(location: str) -> ProfileStore:
    """The process's one store for ``location`` (:func:`open_store` on first use): every
    request of a worker shares its connections."""
    store = _STORES.get(location)
    if store is None:
        with _STORES_LOCK:
            store = _STORES.get(location)
            if store is None:
                store = _STORES[location] = open_store(location)
    return store
