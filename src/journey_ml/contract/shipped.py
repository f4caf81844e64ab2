"""The journey maps and pipeline config that ship inside the package.

They are edited in the repository's ``pipelines/`` directory, which setuptools maps onto
the subpackage ``journey_ml.pipelines`` (``package-dir`` in pyproject.toml): a wheel carries
them as package data, an editable install reads them straight from ``pipelines/``. So they
are always found through :mod:`importlib.resources`, whatever the working directory and
however the package was installed, and there is no second copy to keep in sync.

A journey map can be given as a file or by the name of a shipped map (``cdnow`` or
``cdnow.yaml`` for ``pipelines/journey_maps/cdnow.yaml``); an existing file always wins.
"""

from __future__ import annotations

import atexit
import contextlib
from importlib import resources
from pathlib import Path

from journey_ml.exceptions import ConfigError

PACKAGE = "journey_ml.pipelines"
MAPS_DIR = "journey_maps"
TRAIN_CONFIG = "train.yaml"
MAP_SUFFIX = ".yaml"

# Resources of a package imported from a zip file are extracted on first use and kept
# until exit; on a normal (directory) install as_file() hands back the file itself.
_extracted = contextlib.ExitStack()
atexit.register(_extracted.close)


def _path(resource: resources.abc.Traversable) -> Path:
    if isinstance(resource, Path):
        return resource
    return _extracted.enter_context(resources.as_file(resource))


def train_config_path() -> Path:
    """The shipped ``pipelines/train.yaml``: what ``journey-ml train`` runs by default."""
    return _path(resources.files(PACKAGE) / TRAIN_CONFIG)


def journey_map_names() -> tuple[str, ...]:
    """Names of the shipped journey maps (file stems of ``pipelines/journey_maps/*.yaml``), sorted."""
    folder = resources.files(PACKAGE) / MAPS_DIR
    return tuple(sorted(e.name[: -len(MAP_SUFFIX)] for e in folder.iterdir() if e.is_file() and e.name.endswith(MAP_SUFFIX)))


def journey_map_path(name: str) -> Path:
    """File of the shipped journey map ``name`` (with or without ``.yaml``).

    Raises :class:`ConfigError` listing the shipped names when there is no such map.
    """
    stem = name[: -len(MAP_SUFFIX)] if name.endswith(MAP_SUFFIX) else name
    names = journey_map_names()
    if stem not in names:
        raise ConfigError(f"no shipped journey map named {name!r}; shipped maps: {', '.join(names)}")
    return _path(resources.files(PACKAGE) / MAPS_DIR / f"{stem}{MAP_SUFFIX}")


def resolve_journey_map(ref: str | Path) -> Path:
    """A journey map reference as a file: an existing file as given, else a shipped map by name.

    A reference that is neither raises :class:`ConfigError` naming it and listing the
    shipped maps, so a typo in ``--journey-map`` says what could have been meant.
    """
    path = Path(ref)
    if path.is_file():
        return path
    text = str(ref)
    is_name = "/" not in text and "\\" not in text and text not in ("", ".", "..")
    names = journey_map_names()
    if is_name and (text[: -len(MAP_SUFFIX)] if text.endswith(MAP_SUFFIX) else text) in names:
        return journey_map_path(text)
    raise ConfigError(
        f"journey map file not found: {ref} (nor is it the name of a shipped map; shipped maps: {', '.join(names)})"
    )
