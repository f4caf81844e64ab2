"""Simple fitted baselines with the same interface as :mod:`journey_ml.models`.

Every model is reported beside these, fitted on the same (weighted) training rows and
scored on the same test rows, so a LightGBM model has to earn its complexity:

* :class:`ClassPriorBaseline` — training class frequencies (next stage with
  ``n_classes=K``; drop-off base rate with ``n_classes=2``).
* :class:`MarkovChainBaseline` — first-order Markov chain over stages: next stage from
  the current stage's smoothed transition frequencies in the training period.
* :class:`RecencyBaseline` — drop-off as a fitted monotone (isotonic) function of
  ``days_since_last_event``.
* :class:`StageMeanRevenueBaseline` — mean future revenue per current stage.
* :class:`BGNBDBaseline` — drop-off as BG/NBD's P(no conversion in the horizon), read
  from the BTYD feature column (maps with a repeat conversion stage).

All take ``fit(X, y, *, X_valid=None, y_valid=None, sample_weight=None)`` (the
validation arguments are accepted for interface parity and ignored), read their feature
columns by name from a DataFrame, raise :class:`~journey_ml.exceptions.NotFittedError`
before ``fit``, and persist as one JSON file (``save``/``load``, never pickle).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.isotonic import IsotonicRegression
from sklearn.utils.validation import check_array, check_consistent_length

from journey_ml.exceptions import ModelBundleError, NotFittedError, did_you_mean
from journey_ml.models.calibration import PROBA_EPS

__all__ = [
    "BGNBDBaseline",
    "ClassPriorBaseline",
    "MarkovChainBaseline",
    "RecencyBaseline",
    "StageMeanRevenueBaseline",
    "check_weights",
    "load_baseline",
    "transition_matrix",
    "transition_rows",
]

BASELINE_FILE = "baseline.json"


class _Baseline(BaseEstimator):
    """Shared validation, fitted-check and JSON persistence for the baselines.

    Subclasses list their learned attributes in ``_state`` (numpy arrays are stored as
    lists and restored as float64 / int64 arrays).
    """

    _kind: ClassVar[str] = ""
    _state: ClassVar[tuple[str, ...]] = ()
    _int_state: ClassVar[tuple[str, ...]] = ("classes_",)

    def _check_fitted(self) -> None:
        if not hasattr(self, self._state[0]):
            raise NotFittedError(
                f"{type(self).__name__} is not fitted yet: call fit(X, y) or load(dir) first"
            )

    @staticmethod
    def _column(X: Any, column: str, param: str) -> NDArray[np.float64]:
        """The named numeric feature column of DataFrame ``X`` as float64 (NaN allowed)."""
        if not isinstance(X, pd.DataFrame):
            raise TypeError(
                f"X must be a pandas DataFrame with a '{column}' column, got {type(X).__name__}"
            )
        if column not in X.columns:
            cols = [str(c) for c in X.columns]
            raise ValueError(
                f"{param}: column '{column}' not in X{did_you_mean(column, cols)}; "
                f"columns are {cols}"
            )
        try:
            return X[column].to_numpy(dtype=np.float64, na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{param}: column '{column}' must be numeric ({exc})") from exc

    def fit(
        self, X: ArrayLike, y: ArrayLike, *, sample_weight: ArrayLike | None = None, **valid: ArrayLike | None
    ) -> Self:
        """Fit on the (weighted) training rows.

        ``X_valid`` and ``y_valid`` are accepted, like the LightGBM models', and ignored:
        a baseline has nothing to early-stop or calibrate.
        """
        unknown = sorted(set(valid) - {"X_valid", "y_valid"})
        if unknown:
            raise TypeError(f"{type(self).__name__}.fit() got unexpected keyword arguments {unknown}")
        ya = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if ya.ndim != 1:
            raise ValueError(f"y must be 1-d, got shape {ya.shape}")
        self._fit(X, ya, check_weights(sample_weight, ya.size))
        return self

    def _fit(self, X: Any, y: NDArray[np.float64], w: NDArray[np.float64]) -> None:
        raise NotImplementedError

    # -- persistence -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable hyperparameters and learned state."""
        self._check_fitted()
        state = {}
        for name in self._state:
            value = getattr(self, name)
            state[name] = value.tolist() if isinstance(value, np.ndarray) else value
        return {"kind": self._kind, "params": self.get_params(), "state": state}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild a fitted baseline from :meth:`to_dict` output."""
        if data.get("kind") != cls._kind:
            raise ModelBundleError(f"baseline kind is {data.get('kind')!r}, expected {cls._kind!r}")
        obj = cls(**data["params"])
        for name in cls._state:
            value = data["state"][name]
            if isinstance(value, list):
                dtype = np.int64 if name in cls._int_state else np.float64
                value = np.asarray(value, dtype=dtype)
            setattr(obj, name, value)
        return obj

    def save(self, directory: str | Path) -> Path:
        """Write ``baseline.json`` into ``directory`` (created if missing)."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        (path / BASELINE_FILE).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True))
        return path

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Load a baseline written by :meth:`save` (plain JSON, never pickle)."""
        return cls.from_dict(_read_json(Path(directory)))


def check_weights(sample_weight: ArrayLike | None, n: int) -> NDArray[np.float64]:
    """Per-row weights: 1-d, one per row, non-negative; all 1 when ``sample_weight`` is None."""
    if sample_weight is None:
        return np.ones(n)
    w = check_array(sample_weight, ensure_2d=False, dtype=np.float64, input_name="sample_weight")
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"sample_weight must have shape ({n},), got {w.shape}")
    if np.any(w < 0):
        raise ValueError(f"sample_weight must be >= 0; got {w[w < 0][0].item()!r}")
    return w


def _read_json(path: Path) -> dict[str, Any]:
    file = path / BASELINE_FILE
    if not file.is_file():
        raise ModelBundleError(f"{path}: missing {BASELINE_FILE}")
    try:
        return json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ModelBundleError(f"{file}: not valid JSON ({exc})") from exc


def _class_labels(y: NDArray[np.float64], n_classes: int | None) -> tuple[NDArray[np.int64], int]:
    if np.any(y != np.round(y)) or np.any(y < 0):
        raise ValueError(
            f"y must hold class indices 0..K-1; got {y[(y != np.round(y)) | (y < 0)][0].item()!r}"
        )
    yi = y.astype(np.int64)
    if n_classes is not None and n_classes < 2:
        raise ValueError(f"n_classes must be >= 2, got {n_classes}")
    k = n_classes if n_classes is not None else max(int(yi.max(initial=0)) + 1, 2)
    if yi.size and yi.max() >= k:
        raise ValueError(f"y holds class {int(yi.max())} but n_classes={k} (allowed 0..{k - 1})")
    return yi, k


def transition_matrix(
    current: NDArray[np.float64],
    next_stage: NDArray[np.int64],
    n_classes: int,
    *,
    smoothing: float = 1.0,
    sample_weight: NDArray[np.float64] | None = None,
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Smoothed first-order transition matrix between stage indices.

    Parameters
    ----------
    current : ndarray of float, shape (n,)
        Current stage index per row; NaN or values outside ``0..n_classes-1`` are not
        counted as a transition (they still count toward the prior).
    next_stage : ndarray of int, shape (n,)
        Next stage index per row, in ``0..n_classes-1``.
    n_classes : int
        Number of stages ``K``.
    smoothing : float
        Additive pseudo-count per transition (and per class of the prior).
    sample_weight : ndarray, optional
        Row weights (counts become weighted sums).

    Returns
    -------
    counts : ndarray (K, K)
        Weighted transition counts, rows = current stage.
    transition : ndarray (K, K)
        ``(counts + smoothing) / (row total + smoothing * K)``; a row never observed is
        the prior instead. Rows sum to 1.
    prior : ndarray (K,)
        Smoothed next-stage frequencies.
    """
    k = n_classes
    w = np.ones(next_stage.size) if sample_weight is None else sample_weight
    ok = np.isfinite(current) & (current >= 0) & (current < k)
    ci = np.where(ok, current, 0).astype(np.int64)
    # One bincount over the flattened (from, to) pair index: vectorised counting.
    counts = np.bincount(ci[ok] * k + next_stage[ok], weights=w[ok], minlength=k * k)
    counts = counts.reshape(k, k).astype(np.float64)
    prior_counts = np.bincount(next_stage, weights=w, minlength=k) + smoothing
    if prior_counts.sum() <= 0:
        raise ValueError("no training rows and smoothing=0: the transition matrix is undefined")
    prior = prior_counts / prior_counts.sum()
    row = counts.sum(axis=1, keepdims=True)
    smoothed = counts + smoothing
    with np.errstate(invalid="ignore", divide="ignore"):
        trans = smoothed / smoothed.sum(axis=1, keepdims=True)
    return counts, np.where(row > 0, trans, prior[None, :]), prior


def transition_rows(
    transition: NDArray[np.float64], prior: NDArray[np.float64], current: NDArray[np.float64]
) -> NDArray[np.float64]:
    """The transition row of each ``current`` stage; the prior where it is missing or unknown."""
    k = transition.shape[0]
    ok = np.isfinite(current) & (current >= 0) & (current < k)
    rows = transition[np.where(ok, current, 0).astype(np.int64)]
    rows[~ok] = prior
    return rows


class ClassPriorBaseline(ClassifierMixin, _Baseline):
    """Predict the (smoothed) training class frequencies for every row.

    Parameters
    ----------
    n_classes : int, optional
        Number of classes ``K``: the number of stages for next stage, 2 for drop-off.
        ``None`` infers ``max(y) + 1``.
    smoothing : float
        Additive (Laplace) pseudo-count per class, so no class gets probability 0.

    Attributes
    ----------
    classes_ : ndarray of int ``0..K-1``
    prior_ : ndarray of float, shape (K,), sums to 1.

    Examples
    --------
    >>> import pandas as pd
    >>> b = ClassPriorBaseline(n_classes=2, smoothing=0).fit(pd.DataFrame({"a": [0, 0, 0, 0]}), [0, 1, 1, 1])
    >>> b.predict_proba(pd.DataFrame({"a": [5]})).tolist()
    [[0.25, 0.75]]
    """

    _kind: ClassVar[str] = "class_prior"
    _state: ClassVar[tuple[str, ...]] = ("prior_", "classes_", "n_features_in_")

    def __init__(self, *, n_classes: int | None = None, smoothing: float = 1.0) -> None:
        self.n_classes = n_classes
        self.smoothing = smoothing

    def _fit(self, X: Any, y: NDArray[np.float64], w: NDArray[np.float64]) -> None:
        """Count (weighted) class frequencies. ``X`` only fixes the row count."""
        Xa = np.asarray(X)
        check_consistent_length(Xa, y)
        yi, k = _class_labels(y, self.n_classes)
        counts = np.bincount(yi, weights=w, minlength=k) + self.smoothing
        if counts.sum() <= 0:
            raise ValueError("no training rows and smoothing=0: the class prior is undefined")
        self.prior_ = counts / counts.sum()
        self.classes_ = np.arange(k, dtype=np.int64)
        self.n_features_in_ = int(Xa.shape[1]) if Xa.ndim == 2 else 1

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """The prior for every row, shape ``(n_samples, K)``."""
        self._check_fitted()
        return np.tile(self.prior_, (len(X), 1))

    def predict(self, X: ArrayLike) -> NDArray[np.int64]:
        """The most frequent training class for every row."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class MarkovChainBaseline(ClassifierMixin, _Baseline):
    """First-order Markov chain: ``P(next_stage = j | current_stage = i)`` from training.

    ``transition_[i, j] = (count(i -> j) + smoothing) / (count(i) + smoothing * K)``.
    A current stage never seen in training (or outside ``0..K-1`` / missing) gets the
    smoothed class prior of ``next_stage`` instead of a uniform row.

    Parameters
    ----------
    n_classes : int, optional
        Number of stages ``K``; ``None`` infers it from ``y`` and the current stages.
    stage_column : str
        Feature column holding the integer current stage index.
    smoothing : float
        Additive pseudo-count per transition.

    Attributes
    ----------
    classes_ : ndarray of int ``0..K-1``
    counts_ : ndarray (K, K) — weighted transition counts.
    transition_ : ndarray (K, K) — rows sum to 1.
    prior_ : ndarray (K,) — fallback row for unseen current stages.

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"current_stage": [0, 0, 0, 1]})
    >>> b = MarkovChainBaseline(n_classes=3, smoothing=0).fit(X, [0, 1, 1, 2])
    >>> b.transition_[0].round(3).tolist()
    [0.333, 0.667, 0.0]
    """

    _kind: ClassVar[str] = "markov_chain"
    _state: ClassVar[tuple[str, ...]] = ("transition_", "counts_", "prior_", "classes_")

    def __init__(
        self,
        *,
        n_classes: int | None = None,
        stage_column: str = "current_stage",
        smoothing: float = 1.0,
    ) -> None:
        self.n_classes = n_classes
        self.stage_column = stage_column
        self.smoothing = smoothing

    def _fit(self, X: Any, ya: NDArray[np.float64], w: NDArray[np.float64]) -> None:
        """Count current-stage -> next-stage transitions in the training rows."""
        current = self._column(X, self.stage_column, "stage_column")
        check_consistent_length(current, ya)
        n_classes = self.n_classes
        if n_classes is None:
            seen = current[np.isfinite(current)]
            n_classes = max(int(ya.max(initial=0)), int(seen.max(initial=0))) + 1
        yi, k = _class_labels(ya, max(n_classes, 2))
        self.counts_, self.transition_, self.prior_ = transition_matrix(
            current, yi, k, smoothing=self.smoothing, sample_weight=w
        )
        self.classes_ = np.arange(k, dtype=np.int64)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """Transition row of each row's current stage, shape ``(n_samples, K)``."""
        self._check_fitted()
        current = self._column(X, self.stage_column, "stage_column")
        return transition_rows(self.transition_, self.prior_, current)

    def predict(self, X: ArrayLike) -> NDArray[np.int64]:
        """Most probable next stage per row."""
        proba = self.predict_proba(X)
        return self.classes_[np.argmax(proba, axis=1)]


class RecencyBaseline(ClassifierMixin, _Baseline):
    """Drop-off risk as a monotone function of days since the customer's last event.

    Fitted by weighted isotonic regression of the 0/1 drop-off label on recency
    (non-decreasing by default: a longer silence should not lower the risk), i.e. the
    empirical drop-off rate per recency level, pooled where it would break monotonicity.
    Probabilities are interpolated between the fitted thresholds, clipped to the
    training range, and kept in ``[1e-7, 1 - 1e-7]``; a missing recency gets the base
    rate.

    Parameters
    ----------
    recency_column : str
        Feature column with days since the last event at the cutoff.
    increasing : bool
        Direction of the monotone fit.

    Attributes
    ----------
    classes_ : ndarray ``[0, 1]``
    thresholds_x_, thresholds_y_ : ndarray — the isotonic step function.
    base_rate_ : float

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"days_since_last_event": [0, 1, 2, 10, 20, 30]})
    >>> b = RecencyBaseline().fit(X, [0, 0, 1, 0, 1, 1])
    >>> b.predict_proba(pd.DataFrame({"days_since_last_event": [0, 25]}))[:, 1].round(2).tolist()
    [0.0, 1.0]
    """

    _kind: ClassVar[str] = "recency"
    _state: ClassVar[tuple[str, ...]] = (
        "thresholds_x_",
        "thresholds_y_",
        "base_rate_",
        "classes_",
    )

    def __init__(
        self, *, recency_column: str = "days_since_last_event", increasing: bool = True
    ) -> None:
        self.recency_column = recency_column
        self.increasing = increasing

    def _fit(self, X: Any, ya: NDArray[np.float64], w: NDArray[np.float64]) -> None:
        """Fit the isotonic drop-off curve on training rows with a known recency."""
        recency = self._column(X, self.recency_column, "recency_column")
        check_consistent_length(recency, ya)
        bad = ~np.isin(ya, (0.0, 1.0))
        if bad.any():
            raise ValueError(f"y must hold only 0/1 drop-off labels; got {ya[bad][0].item()!r}")
        if w.sum() <= 0:
            raise ValueError("RecencyBaseline needs at least one training row with weight > 0")
        self.base_rate_ = float(np.average(ya, weights=w))
        known = np.isfinite(recency)
        if known.any():
            iso = IsotonicRegression(
                increasing=self.increasing, out_of_bounds="clip", y_min=PROBA_EPS, y_max=1 - PROBA_EPS
            )
            iso.fit(recency[known], ya[known], sample_weight=w[known])
            self.thresholds_x_ = np.asarray(iso.X_thresholds_, dtype=np.float64)
            self.thresholds_y_ = np.asarray(iso.y_thresholds_, dtype=np.float64)
        else:
            self.thresholds_x_ = np.array([0.0])
            self.thresholds_y_ = np.array([self.base_rate_])
        self.classes_ = np.array([0, 1], dtype=np.int64)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """``[P(stay), P(drop-off)]``, shape ``(n_samples, 2)``."""
        self._check_fitted()
        recency = self._column(X, self.recency_column, "recency_column")
        p = np.interp(recency, self.thresholds_x_, self.thresholds_y_)
        p = np.where(np.isfinite(recency), p, self.base_rate_)
        p = np.clip(p, PROBA_EPS, 1 - PROBA_EPS)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: ArrayLike, threshold: float = 0.5) -> NDArray[np.int64]:
        """0/1 drop-off at ``threshold``."""
        return (self.predict_proba(X)[:, 1] >= threshold).astype(np.int64)


class StageMeanRevenueBaseline(RegressorMixin, _Baseline):
    """Expected future revenue = mean training future revenue of the row's current stage.

    Stage means are shrunk toward the overall mean with ``prior_weight`` pseudo-rows
    (0 gives plain per-stage means); an unseen or missing stage gets the overall mean.

    Parameters
    ----------
    stage_column : str
        Feature column holding the integer current stage index.
    prior_weight : float
        Pseudo-rows of the overall mean added to every stage.

    Attributes
    ----------
    stage_means_ : ndarray — mean per stage index ``0..max_stage`` (NaN where unseen).
    global_mean_ : float

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"current_stage": [0, 0, 3, 3]})
    >>> b = StageMeanRevenueBaseline().fit(X, [0.0, 10.0, 50.0, 70.0])
    >>> b.predict(pd.DataFrame({"current_stage": [0, 3, 5]})).tolist()
    [5.0, 60.0, 32.5]
    """

    _kind: ClassVar[str] = "stage_mean_revenue"
    _state: ClassVar[tuple[str, ...]] = ("stage_means_", "global_mean_")

    def __init__(self, *, stage_column: str = "current_stage", prior_weight: float = 0.0) -> None:
        self.stage_column = stage_column
        self.prior_weight = prior_weight

    def _fit(self, X: Any, ya: NDArray[np.float64], w: NDArray[np.float64]) -> None:
        """Weighted mean of ``y`` per current stage."""
        current = self._column(X, self.stage_column, "stage_column")
        check_consistent_length(current, ya)
        if np.any(ya < 0):
            raise ValueError(f"y must be >= 0 (future revenue); got {ya[ya < 0][0].item()!r}")
        if w.sum() <= 0:
            raise ValueError("StageMeanRevenueBaseline needs at least one training row")
        self.global_mean_ = float(np.average(ya, weights=w))
        ok = np.isfinite(current) & (current >= 0) & (current == np.round(current))
        ci = current[ok].astype(np.int64)
        size = int(ci.max(initial=-1)) + 1
        total = np.bincount(ci, weights=w[ok] * ya[ok], minlength=size)
        count = np.bincount(ci, weights=w[ok], minlength=size)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = (total + self.prior_weight * self.global_mean_) / (count + self.prior_weight)
        self.stage_means_ = np.where(count > 0, means, np.nan)

    def predict(self, X: ArrayLike) -> NDArray[np.float64]:
        """Stage mean per row, shape ``(n_samples,)``, ``>= 0``."""
        self._check_fitted()
        current = self._column(X, self.stage_column, "stage_column")
        size = self.stage_means_.size
        ok = np.isfinite(current) & (current >= 0) & (current < size)
        pred = self.stage_means_[np.where(ok, current, 0).astype(np.int64)] if size else current
        pred = np.where(ok, pred, np.nan)
        return np.where(np.isnan(pred), self.global_mean_, pred)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable hyperparameters and learned state (NaN stored as null)."""
        out = super().to_dict()
        out["state"]["stage_means_"] = [
            None if np.isnan(v) else float(v) for v in self.stage_means_
        ]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Rebuild from :meth:`to_dict` output (null stage means back to NaN)."""
        data = json.loads(json.dumps(data))
        data["state"]["stage_means_"] = [
            np.nan if v is None else v for v in data["state"]["stage_means_"]
        ]
        return super().from_dict(data)


class BGNBDBaseline(ClassifierMixin, _Baseline):
    """Drop-off risk = BG/NBD's P(no conversion in the horizon), as the BTYD feature has it.

    The BG/NBD parameters are fitted with the feature spec
    (:func:`journey_ml.features.btyd.fit_schedule`: on conversions before each row's
    cutoff); this baseline only reads the column. Rows without a BG/NBD value (no
    conversion yet, or before the first fit) get the training drop-off rate of such rows.

    Parameters
    ----------
    score_column : str
        Feature column with P(no conversion in the horizon).

    Attributes
    ----------
    classes_ : ndarray ``[0, 1]``
    fallback_rate_ : float — drop-off rate of the training rows without a BG/NBD value.

    Examples
    --------
    >>> import pandas as pd
    >>> X = pd.DataFrame({"btyd_p_no_conversion": [0.2, 0.9, None, None]})
    >>> b = BGNBDBaseline().fit(X, [0, 1, 1, 0])
    >>> b.predict_proba(X)[:, 1].round(2).tolist()
    [0.2, 0.9, 0.5, 0.5]
    """

    _kind: ClassVar[str] = "bg_nbd"
    _state: ClassVar[tuple[str, ...]] = ("fallback_rate_", "classes_")

    def __init__(self, *, score_column: str = "btyd_p_no_conversion") -> None:
        self.score_column = score_column

    def _fit(self, X: Any, ya: NDArray[np.float64], w: NDArray[np.float64]) -> None:
        """Learn the drop-off rate of the rows the model cannot score."""
        score = self._column(X, self.score_column, "score_column")
        check_consistent_length(score, ya)
        if w.sum() <= 0:
            raise ValueError("BGNBDBaseline needs at least one training row with weight > 0")
        missing = ~np.isfinite(score)
        pool = missing if w[missing].sum() > 0 else np.ones_like(missing)
        self.fallback_rate_ = float(np.average(ya[pool], weights=w[pool]))
        self.classes_ = np.array([0, 1], dtype=np.int64)

    def predict_proba(self, X: ArrayLike) -> NDArray[np.float64]:
        """``[P(stay), P(drop-off)]``, shape ``(n_samples, 2)``."""
        self._check_fitted()
        score = self._column(X, self.score_column, "score_column")
        p = np.clip(np.where(np.isfinite(score), score, self.fallback_rate_), PROBA_EPS, 1 - PROBA_EPS)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: ArrayLike, threshold: float = 0.5) -> NDArray[np.int64]:
        """0/1 drop-off at ``threshold``."""
        return (self.predict_proba(X)[:, 1] >= threshold).astype(np.int64)


_BASELINE_CLASSES: dict[str, type[_Baseline]] = {
    cls._kind: cls
    for cls in (ClassPriorBaseline, MarkovChainBaseline, RecencyBaseline, StageMeanRevenueBaseline, BGNBDBaseline)
}


def load_baseline(
    directory: str | Path,
) -> ClassPriorBaseline | MarkovChainBaseline | RecencyBaseline | StageMeanRevenueBaseline | BGNBDBaseline:
    """Load whichever baseline :meth:`save` wrote into ``directory`` (dispatch on ``kind``)."""
    data = _read_json(Path(directory))
    kind = str(data.get("kind"))
    if kind not in _BASELINE_CLASSES:
        raise ModelBundleError(
            f"{directory}: unknown baseline kind {kind!r}{did_you_mean(kind, _BASELINE_CLASSES)}; "
            f"known: {sorted(_BASELINE_CLASSES)}"
        )
    return _BASELINE_CLASSES[kind].from_dict(data)  # type: ignore[return-value]
