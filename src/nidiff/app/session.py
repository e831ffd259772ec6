"""Per-user state of the studio: the inversion cache ("invert once, edit many") and counters.

An edit-friendly inversion costs ``steps`` network calls (plus ``steps`` more to measure its
reconstruction error) and depends only on the image, the model, the source condition and the
inversion's own settings; the target, ``skip``, the target guidance and every strength act only
when regenerating. So each session keeps its inversions under :class:`InversionKey` and every
edit of the same input reuses them, whatever it changes on the target side.

Memory is bounded three times: each session keeps at most ``cache_entries`` inversions (least
recently used dropped first), the server keeps at most ``max_sessions`` sessions (least recently
active dropped first, and a session's state goes when its page is closed), and all sessions'
inversions together hold at most ``cache_bytes`` of tensors (:class:`ByteBudget`: the least
recently used inversion anywhere is dropped first). The count bounds alone would let a large
model's inversions (an SDXL inversion at 50 steps holds ~50 MB, a 1024² FLUX one more) add up
to gigabytes; the byte budget holds whatever the model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "ByteBudget", "CachedInversion", "InversionCache", "InversionKey", "Session", "SessionStore",
    "tensor_bytes",
]  # fmt: skip


@dataclass(frozen=True)
class InversionKey:
    """What an edit-friendly inversion depends on.

    Attributes:
        image: SHA-256 of the uploaded file's bytes (or of the bundled example's).
        model: the model's name as ``--model`` gave it.
        source: the source condition as resolved (class id, or the prompt).
        steps, seed: the grid's steps and the seed of the inversion's noise.
        source_guidance, eta, sampler: the inversion's guidance, η and step rule (they
            change the maps too).
    """

    image: str
    model: str
    source: str
    steps: int
    seed: int
    source_guidance: float
    eta: float | None
    sampler: str | None = None


@dataclass(frozen=True, eq=False)
class CachedInversion:
    """One inversion and what it cost: ``inversion``
    (:class:`~nidiff.inversion.Inversion`), ``error`` = max |x̂₀ − x₀| of its regeneration with
    the source condition (~0: edit-friendly inversion is exact), ``calls`` = network calls
    spent making and checking it."""

    inversion: Any
    error: float
    calls: int


def tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in ``obj`` (a tensor, a dataclass such as an
    :class:`~nidiff.inversion.Inversion`, or lists, tuples and dicts of them), each counted
    once."""
    import dataclasses

    import torch

    seen: set[int] = set()

    def walk(x: Any) -> int:
        if isinstance(x, torch.Tensor):
            key = x.untyped_storage().data_ptr()
            if key in seen:
                return 0
            seen.add(key)
            return x.untyped_storage().nbytes()
        if dataclasses.is_dataclass(x) and not isinstance(x, type):
            return sum(walk(getattr(x, f.name)) for f in dataclasses.fields(x))
        if isinstance(x, dict):
            return sum(walk(v) for v in x.values())
        if isinstance(x, list | tuple):
            return sum(walk(v) for v in x)
        return 0

    return walk(obj)


class ByteBudget:
    """The bytes held by the cached inversions of every session, at most ``limit``: storing an
    entry drops the least recently used entries of any session until the rest fit (an entry
    larger than the whole budget is kept alone: the request that made it uses it). Thread-safe;
    the caches sharing it mutate their entries under its lock."""

    def __init__(self, limit: int):
        if limit < 1:
            raise ValueError(f"limit={limit} must be >= 1 byte")
        self.limit = limit
        self.lock = threading.RLock()
        self._held: OrderedDict[tuple[int, InversionKey], tuple[InversionCache, int]] = (
            OrderedDict()
        )

    @property
    def held(self) -> int:
        """Bytes held now."""
        return sum(n for _, n in self._held.values())

    def touch(self, cache: InversionCache, key: InversionKey) -> None:
        self._held.move_to_end((id(cache), key))

    def store(self, cache: InversionCache, key: InversionKey, nbytes: int) -> None:
        self._held[(id(cache), key)] = (cache, nbytes)
        while self.held > self.limit and len(self._held) > 1:
            (_, old_key), (owner, _) = self._held.popitem(last=False)
            owner._entries.pop(old_key, None)

    def release(self, cache: InversionCache, key: InversionKey) -> None:
        self._held.pop((id(cache), key), None)


class InversionCache:
    """A least-recently-used map :class:`InversionKey` → :class:`CachedInversion` of at most
    ``capacity`` entries, within the shared ``budget`` of bytes if given; :attr:`made` counts
    the inversions computed (not reused)."""

    def __init__(self, capacity: int, budget: ByteBudget | None = None):
        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be >= 1")
        self.capacity = capacity
        self.budget = budget if budget is not None else ByteBudget(2**62)
        self.made = 0
        self._entries: OrderedDict[InversionKey, CachedInversion] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: InversionKey) -> bool:
        return key in self._entries

    def get(self, key: InversionKey, make: Callable[[], CachedInversion]) -> CachedInversion:
        """The entry of ``key``, made with ``make()`` (and stored, dropping the least recently
        used entries beyond the capacity or the byte budget) if absent."""
        with self.budget.lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.budget.touch(self, key)
                return self._entries[key]
        entry = make()  # outside the lock: other sessions keep working meanwhile
        with self.budget.lock:
            self.made += 1
            self._entries[key] = entry
            self.budget.store(self, key, tensor_bytes(entry.inversion))
            while len(self._entries) > self.capacity:
                old, _ = self._entries.popitem(last=False)
                self.budget.release(self, old)
        return entry

    def clear(self) -> None:
        """Drop every entry (and its bytes from the budget)."""
        with self.budget.lock:
            for key in self._entries:
                self.budget.release(self, key)
            self._entries.clear()


@dataclass(eq=False)
class Session:
    """One user's state: the inversion cache, the network calls spent so far (:attr:`calls`)
    and a lock that runs the session's requests one at a time (a double click cannot race
    its own cache)."""

    cache: InversionCache
    calls: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


class SessionStore:
    """Sessions by gradio's session hash, at most ``max_sessions`` (least recently active
    dropped first), each with an :class:`InversionCache` of ``cache_entries``, all within one
    :class:`ByteBudget` of ``cache_bytes``. Thread-safe."""

    def __init__(self, max_sessions: int, cache_entries: int, cache_bytes: int = 2**62):
        if max_sessions < 1:
            raise ValueError(f"max_sessions={max_sessions} must be >= 1")
        self.max_sessions, self.cache_entries = max_sessions, cache_entries
        self.budget = ByteBudget(cache_bytes)
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, session_id: str) -> Session:
        """The session of ``session_id`` (a new one if unknown or dropped)."""
        with self._lock:
            if session_id in self._sessions:
                self._sessions.move_to_end(session_id)
                return self._sessions[session_id]
            session = Session(InversionCache(self.cache_entries, self.budget))
            self._sessions[session_id] = session
            while len(self._sessions) > self.max_sessions:
                _, old = self._sessions.popitem(last=False)
                old.cache.clear()
            return session

    def drop(self, session_id: str) -> None:
        """Forget a session (its page was closed)."""
        with self._lock:
            session = self._sessions.pop(session_id, None)
        if session is not None:
            session.cache.clear()
