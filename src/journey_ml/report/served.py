"""The page ``GET /report`` serves: the one written with the serving model's bundle.

Training writes ``report.html`` into the bundle directory and into the bundle it
registers, so the page travels with the model; the service reads it from the bundle it
loaded (an alias is pinned to the version it resolved to).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from journey_ml.registry.bundle import is_mlflow_uri, resolve_bundle_dir

__all__ = ["PAGE_FILE", "served_page"]

#: The page's file name inside a bundle directory.
PAGE_FILE = "report.html"


@lru_cache(maxsize=4)
def served_page(ref: str, token: str, tracking_uri: str | None = None) -> str | None:
    """The report page stored with the bundle ``ref`` points at, or None when it has none.

    ``token`` is the serving holder's token for the loaded model (for ``models:/NAME@alias``
    the version it resolved to); a new token reads the page again.
    """
    if ref.startswith("models:/") and "@" in ref:
        ref = f"models:/{ref.removeprefix('models:/').split('@', 1)[0]}/{token}"
    directory = resolve_bundle_dir(ref, tracking_uri=tracking_uri) if is_mlflow_uri(ref) else Path(ref)
    page = directory / PAGE_FILE
    return page.read_text(encoding="utf-8") if page.is_file() else None
