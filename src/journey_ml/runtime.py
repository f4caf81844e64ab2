"""Process-level helpers: garbage collection around bulk loads, caches of what fitted objects give."""

from __future__ import annotations

import contextlib
import functools
import gc
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from importlib.machinery import ModuleSpec

T = TypeVar("T")


class RefuseInThread:
    """An import finder (for ``sys.meta_path``) that refuses the package ``prefix`` (and
    its submodules) in the thread that made it; every other thread imports as usual.
    (Not an ``importlib.abc`` subclass: importing that module costs more than the rest of
    this one.)"""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.thread = threading.get_ident()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: Any = None
    ) -> ModuleSpec | None:
        """Raise ImportError for ``prefix`` imports in the owning thread; else defer to the other finders."""
        if threading.get_ident() == self.thread and (fullname == self.prefix or fullname.startswith(self.prefix + ".")):
            raise ImportError(f"{fullname} is not imported while numba's CPU target is set up")
        return None


def set_up_numba_target() -> None:
    """Load numba's CPU target (its typing and lowering registries), which the first
    compiled kernel of a process needs, without numba's BLAS probe.

    numba probes for BLAS by importing ``scipy.linalg``, and scipy's array-API layer then
    imports numpy's lazy submodules (``numpy.f2py`` among them): more CPU than everything
    else in numba's start-up together, for a BLAS none of this package's kernels calls. The
    probe is refused in this thread only, so numba records "no BLAS" for its one use of the
    flag (``np.correlate``/``np.convolve`` inner products fall back to a plain loop); its
    ``np.dot`` and ``np.linalg`` still import scipy when compiled, and other threads and
    later imports of ``scipy.linalg`` are untouched. Where numba's target is already set
    up this costs nothing.
    """
    from numba.core.compiler_lock import global_compiler_lock
    from numba.core.registry import cpu_target

    finder = RefuseInThread("scipy.linalg")
    sys.meta_path.insert(0, finder)
    try:
        with global_compiler_lock:  # a kernel called meanwhile in another thread waits for it
            cpu_target.target_context.refresh()
    finally:
        sys.meta_path.remove(finder)


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
