"""Process-level helpers shared by the bulk readers."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


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
