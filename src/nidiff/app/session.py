"""Per-user state of the studio: the inversion cache ("invert once, edit many") and counters.

An edit-friendly inversion costs ``steps`` network calls (plus ``steps`` more to measure its
reconstruction error) and depends only on the image, the model, the source condition and the
inversion's own settings; the target, ``skip``, the target guidance and every strength act only
when regenerating. So each session keeps its inversions under :class:`InversionKey` and every
edit of the same input reuses them, whatever it changes on the target side.

Memory is bounded twice: each session keeps at most ``cache_entries`` inversions (least recently
used dropped first) and the server keeps at most ``max_sessions`` sessions (least recently
active dropped first, and a session's state goes when its page is closed).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["CachedInversion", "InversionCache", "InversionKey", "Session", "SessionStore"]


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


class InversionCache:
    """A least-recently-used map :class:`InversionKey` → :class:`CachedInversion` of at most
    ``capacity`` entries; :attr:`made` counts the inversions computed (not reused)."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"capacity={capacity} must be >= 1")
        self.capacity = capacity
        self.made = 0
        self._entries: OrderedDict[InversionKey, CachedInversion] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: InversionKey) -> bool:
        return key in self._entries

    def get(self, key: InversionKey, make: Callable[[], CachedInversion]) -> CachedInversion:
        """The entry of ``key``, made with ``make()`` (and stored, dropping the least recently
        used entry when full) if absent."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        entry = make()
        self.made += 1
        self._entries[key] = entry
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)
        return entry


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
    dropped first), each with an :class:`InversionCache` of ``cache_entries``. Thread-safe."""

    def __init__(self, max_sessions: int, cache_entries: int):
        if max_sessions < 1:
            raise ValueError(f"max_sessions={max_sessions} must be >= 1")
        self.max_sessions, self.cache_entries = max_sessions, cache_entries
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
            session = Session(InversionCache(self.cache_entries))
            self._sessions[session_id] = session
            while len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
            return session

    def drop(self, session_id: str) -> None:
        """Forget a session (its page was closed)."""
        with self._lock:
            self._sessions.pop(session_id, None)
