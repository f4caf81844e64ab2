"""Process-level helpers: garbage collection around bulk loads, caches of what fitted objects give."""

from __future__ import annotations

import contextlib
import functools
import gc
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

T = TypeVar("T")


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside the block.

    Bulk loads and parsers make many small objects; a full collection over the growing
    heap mid-load costs a noticeable share of the load. Collection resumes afterwards
    unless the caller had disabled it.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def per_identity(build: Callable[..., T], *, kept: int = 64) -> Callable[..., T]:
    """``build(*objects)``, computed once per identity of its arguments (a spec, a map, a
    model) and shared by threads; the result must not be mutated.

    An entry keeps its arguments alive, so their ids cannot be reused by other objects;
    at most ``kept`` entries are held (the oldest goes first). Serving builds a small log
    per request, and what depends on the fitted objects alone must not be rebuilt each time.
    """
    store: dict[tuple[int, ...], tuple[tuple[Any, ...], T]] = {}
    lock = threading.Lock()

    @functools.wraps(build)
    def cached(*objects: Any) -> T:
        hit = store.get(tuple(map(id, objects)))
        if hit is not None:
            return hit[1]
        value = build(*objects)
        with lock:
            while len(store) >= kept:
                store.pop(next(iter(store)))
            store[tuple(map(id, objects))] = (objects, value)
        return value

    return cached
