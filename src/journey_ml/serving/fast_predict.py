"""LightGBM's single-row fast C prediction for the online scorer (same trees, same numbers).

``Booster.predict`` spends most of a one-row call in Python (a predictor object, parameter
strings, input checks) rather than in the trees. LightGBM's C API has a path made for this:
``LGBM_BoosterPredictForMatSingleRowFastInit`` prepares the prediction (kind, iteration,
columns, one thread) once, and ``LGBM_BoosterPredictForMatSingleRowFast`` then scores one
float64 row. It runs the same tree traversal on the same model text, so its values are those
of ``Booster.predict`` bit for bit (``tests/test_online.py`` checks; the online-equals-batch
tests cover it end to end).

:func:`fast_model` gives a view of a fitted model whose ``booster_`` is a :class:`FastBooster`:
the model's own ``raw_margin``/``calibrated`` code (offsets, calibration) runs unchanged on
top. Requests of more than :data:`FAST_ROWS` rows, or any other call, go to the real
booster. Everything here is an optimisation of the serving process only.
"""

from __future__ import annotations

import ctypes
import functools
import threading
from typing import Any

import lightgbm as lgb
import numpy as np

from journey_ml.runtime import per_identity

__all__ = ["FAST_ROWS", "FastBooster", "fast_model"]

#: Up to this many rows, rows are scored one by one on the fast path.
FAST_ROWS = 16

_DTYPE_FLOAT64 = 1  # C_API_DTYPE_FLOAT64
_RAW_SCORE = 1  # C_API_PREDICT_RAW_SCORE
_CONTRIB = 3  # C_API_PREDICT_CONTRIB
#: The ``predict`` keywords the fast path answers.
_FAST_KEYS = frozenset({"raw_score", "pred_contrib", "num_iteration", "num_threads"})


def _lib() -> ctypes.CDLL:
    """LightGBM's shared library, as the ``lightgbm`` package loaded it (its C API is public;
    the package exposes no public handle to it)."""
    return lgb.basic._LIB  # type: ignore[attr-defined,no-any-return]


def _check(code: int) -> None:
    if code != 0:
        raise lgb.basic.LightGBMError(_lib().LGBM_GetLastError().decode("utf-8", "replace"))


class FastBooster:
    """A booster that answers ``predict(X, raw_score=True | pred_contrib=True, ...)`` for
    up to :data:`FAST_ROWS` rows through the C single-row path, everything else through the
    wrapped :class:`lightgbm.Booster`.

    It loads its own C handle from the booster's model text (trees as stored) and keeps one
    prepared configuration per (kind, iteration). Calls are serialised by a lock (the C
    configuration is not meant for concurrent use); serving scores on one thread anyway.
    """

    def __init__(self, booster: lgb.Booster) -> None:
        self.booster = booster
        lib = _lib()
        self._handle = ctypes.c_void_p()
        iterations = ctypes.c_int(0)
        _check(lib.LGBM_BoosterLoadModelFromString(booster.model_to_string(num_iteration=-1).encode(), ctypes.byref(iterations), ctypes.byref(self._handle)))
        self.n_features = booster.num_feature()
        self.n_outputs = booster.num_model_per_iteration()
        self._configs: dict[tuple[int, int], ctypes.c_void_p] = {}
        self._lock = threading.Lock()
        self._fast = lib.LGBM_BoosterPredictForMatSingleRowFast

    def _config(self, kind: int, iteration: int) -> ctypes.c_void_p:
        key = (kind, iteration)
        config = self._configs.get(key)
        if config is None:
            config = ctypes.c_void_p()
            _check(_lib().LGBM_BoosterPredictForMatSingleRowFastInit(
                self._handle, ctypes.c_int(kind), ctypes.c_int(0), ctypes.c_int(iteration), ctypes.c_int(_DTYPE_FLOAT64),
                ctypes.c_int32(self.n_features), b"num_threads=1", ctypes.byref(config),
            ))  # fmt: skip
            self._configs[key] = config
        return config

    def predict(self, X: Any, **kwargs: Any) -> np.ndarray:
        """``Booster.predict(X, **kwargs)``; on the fast path for small float64 matrices."""
        raw, contrib = bool(kwargs.get("raw_score")), bool(kwargs.get("pred_contrib"))
        iteration = kwargs.get("num_iteration")
        if (
            raw == contrib or not _FAST_KEYS.issuperset(kwargs) or type(X) is not np.ndarray or X.dtype != np.float64
            or X.ndim != 2 or not 0 < len(X) <= FAST_ROWS or X.shape[1] != self.n_features or iteration is None
            or iteration <= 0
        ):  # fmt: skip
            return np.asarray(self.booster.predict(X, **kwargs))
        kind = _CONTRIB if contrib else _RAW_SCORE
        width = self.n_outputs * (self.n_features + 1) if contrib else self.n_outputs
        out = np.empty((len(X), width), dtype=np.float64)
        rows = np.ascontiguousarray(X)
        got = ctypes.c_int64(0)
        at, step, out_at, out_step = rows.ctypes.data, rows.strides[0], out.ctypes.data, out.strides[0]
        with self._lock:
            config = self._config(kind, int(iteration))
            for r in range(len(rows)):
                _check(self._fast(config, ctypes.c_void_p(at + r * step), ctypes.byref(got), ctypes.c_void_p(out_at + r * out_step)))
        return out[:, 0] if width == 1 else out

    def __getattr__(self, name: str) -> Any:
        return getattr(self.booster, name)

    def __del__(self) -> None:
        try:
            lib = _lib()
            for config in self._configs.values():
                lib.LGBM_FastConfigFree(config)
            lib.LGBM_BoosterFree(self._handle)
        except Exception:  # interpreter shutdown: nothing left to free into
            pass


def _view(model: Any) -> Any:
    """A view of fitted ``model`` whose ``booster_`` is a :class:`FastBooster` (and whose
    fitted feature names, asked for by every prediction's offset, are listed once)."""
    view = object.__new__(type(model))
    view.__dict__.update(model.__dict__)
    view.booster_ = FastBooster(model.booster_)
    view.fitted_feature_names = functools.partial(list, tuple(model.fitted_feature_names()))
    return view


#: A view of fitted ``model`` (same learned state, shared) whose ``booster_`` is a
#: :class:`FastBooster`, kept per model (a few reloads' worth); the model is not changed.
fast_model = per_identity(_view, kept=32)
