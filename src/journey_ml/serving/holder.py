"""The serving model behind an atomic reference: loading, polling and hot reload.

A request takes :attr:`ModelHolder.current` once and keeps that immutable
:class:`LoadedModel` for its whole life, so a reload never mixes two models in one answer.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from journey_ml.exceptions import JourneyMLError
from journey_ml.registry.bundle import ModelBundle, is_mlflow_uri, load_bundle

__all__ = ["LoadedModel", "ModelHolder"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """An immutable snapshot of the serving model; requests hold one for their whole life."""

    bundle: ModelBundle
    version: str
    ref: str
    token: str  # what the poller compares to detect a change
    loaded_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class ModelHolder:
    """The serving model behind an atomic reference, with polling and manual reload.

    A reload loads the new bundle completely before swapping the reference, so a request
    that already took :attr:`current` finishes with the old model and the next one sees
    the new model. A failed reload is logged and the old model keeps serving.

    Parameters
    ----------
    ref : str
        Bundle directory, ``models:/name@alias``, ``models:/name/N`` or ``runs:/...``.
    tracking_uri : str, optional
        MLflow tracking URI for ``models:/`` references.
    """

    def __init__(self, ref: str, *, tracking_uri: str | None = None) -> None:
        self.ref = str(ref)
        self.tracking_uri = tracking_uri
        self._lock = threading.Lock()  # serialises reloads, never held by requests
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._current = self._load(self._probe())

    @property
    def current(self) -> LoadedModel:
        """The model to use for one request (read once, at the start of the request)."""
        return self._current

    def _probe(self) -> str:
        """A cheap token that changes when the reference points at another model."""
        if self.ref.startswith("models:/") and "@" in self.ref:
            from journey_ml.registry.tracking import registry_version_for_uri

            version = registry_version_for_uri(self.ref, tracking_uri=self.tracking_uri)
            if version is None:
                raise JourneyMLError(f"model alias {self.ref!r} does not resolve to a registered version")
            return version
        if is_mlflow_uri(self.ref):
            return self.ref  # pinned version or run: never changes
        meta = Path(self.ref) / "bundle.json"
        try:
            return hashlib.sha256(meta.read_bytes()).hexdigest()
        except OSError as exc:
            raise JourneyMLError(f"model bundle not readable: {meta}: {exc}") from exc

    def _load(self, token: str) -> LoadedModel:
        """Load the model ``token`` identifies (an alias is pinned to the probed version)."""
        if self.ref.startswith("models:/") and "@" in self.ref:
            # Load the version the alias pointed at when probed, so a move during the
            # download cannot mix the two.
            name = self.ref.removeprefix("models:/").split("@", 1)[0]
            bundle = load_bundle(f"models:/{name}/{token}", tracking_uri=self.tracking_uri)
            version = token
        else:
            bundle = load_bundle(self.ref, tracking_uri=self.tracking_uri)
            version = bundle.version
        return LoadedModel(bundle=bundle, version=str(version), ref=self.ref, token=token)

    def reload(self, *, force: bool = False) -> bool:
        """Swap in the model the reference now points at; True when the model changed.

        Parameters
        ----------
        force : bool
            Reload even when the probe token is unchanged (e.g. a bundle directory
            rewritten in place with the same metadata).
        """
        with self._lock:
            token = self._probe()
            if not force and token == self._current.token:
                return False
            new = self._load(token)
            self._current = new  # single reference assignment: atomic for readers
            logger.info("journey-ml: now serving model version %s (%s)", new.version, self.ref)
            return True

    def start_polling(self, interval: float) -> None:
        """Poll the reference every ``interval`` seconds in a daemon thread (0: no polling)."""
        if interval <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._poll, args=(interval,), name="journey-ml-reload", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the polling thread (idempotent)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _poll(self, interval: float) -> None:
        """The polling thread's loop: reload until :meth:`stop`; a failure keeps the old model."""
        while not self._stop.wait(interval):
            try:
                self.reload()
            except Exception:  # keep serving the old model; the next poll retries
                logger.exception("journey-ml: model reload from %s failed", self.ref)

