"""Dask engine, training: boost one model with ``lightgbm.dask`` and wrap it like a local fit.

Every worker early-stops on the whole in-memory validation frame
(:class:`ReplicatedEarlyStopping`: LightGBM's own distributed early stopping evaluates
each worker's local rows, which can stop workers at different rounds), and the
calibrators are fitted on that frame exactly as in ``fit``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy.special import expit, softmax

from journey_ml.models import RevenueModel
from journey_ml.models.scoring import log_loss

if TYPE_CHECKING:
    import dask.dataframe as dd
    from distributed import Client

__all__ = ["ANCHORED", "WEIGHT", "ReplicatedEarlyStopping", "fit_model"]

#: The training frame's optional per-row weight column.
WEIGHT = "sample_weight"

#: Marks the training frame's event-anchored rows (present with :data:`WEIGHT`): the tasks
#: that fit on weekly rows only, and the baselines, leave them out.
ANCHORED = "anchored_row"


def fit_model(
    model: Any,
    train: dd.DataFrame,
    label: str,
    *,
    feature_names: Sequence[str],
    client: Client,
    X_valid: pd.DataFrame | None = None,
    y_valid: np.ndarray | None = None,
) -> Any:
    """Boost ``model`` (one of :mod:`journey_ml.models`) with ``lightgbm.dask`` on ``train``.

    Parameters
    ----------
    model : NextStageModel, DropOffModel or RevenueModel
        Unfitted; its hyperparameters are used as they are.
    train : dask DataFrame
        Feature columns ``feature_names``, the ``label`` column and optionally the
        :data:`WEIGHT` column (per-row training weights).
    label : str
        Label column.
    feature_names : sequence of str
        The model's input columns, in order.
    client : distributed.Client
    X_valid, y_valid : optional
        In-memory validation rows: every worker early-stops on all of them
        (:class:`ReplicatedEarlyStopping`) and the calibrator is fitted on them, as
        :meth:`fit` does.

    Returns
    -------
    model
        Fitted in place (``booster_``, ``best_iteration_``, calibrator, ...).
    """
    import lightgbm as lgb

    names = list(feature_names)
    X = train[names]
    weights = train[WEIGHT] if WEIGHT in train.columns else None
    n_train = _prepare(model, train, label, names)

    params = model.booster_params()
    params.pop("num_threads", None)  # lightgbm.dask uses each worker's thread count
    init = None
    probe = pd.DataFrame(np.nan, index=range(1), columns=names, dtype=np.float64)
    prior = getattr(model, "stage_prior_column", None)
    if prior:
        probe[prior] = 0.0
    if model.init_score(probe) is not None:
        k = int(model.init_score(probe).shape[1])
        meta = pd.DataFrame({f"c{i}": pd.Series([], dtype=np.float64) for i in range(k)})
        init = X.map_partitions(_init_score_frame, model, meta=meta)
    callbacks: list[Any] = []
    Xv = None if X_valid is None else X_valid[names]
    if Xv is not None and y_valid is not None and model.early_stopping_rounds:
        stopper = ReplicatedEarlyStopping(
            Xv.to_numpy(dtype=np.float32),
            np.asarray(y_valid, dtype=np.float64),
            _init_score(model, Xv),
            params["objective"],
            params,
            int(model.early_stopping_rounds),
        )
        # Sent to every worker once, as data: a future inside the task's arguments is
        # replaced by the worker's copy. Passed by value, the validation matrix would be
        # pickled into every training task and held by the scheduler as well.
        callbacks.append(client.scatter(stopper, broadcast=True, hash=False))
        del stopper
    # A regressor wrapper never re-encodes labels: the booster sees stage indices 0..K-1
    # (num_class from the model) even when a stage is absent from training.
    est = lgb.DaskLGBMRegressor(client=client, n_estimators=model.n_estimators, **params)
    with contextlib.redirect_stdout(sys.stderr):  # lightgbm.dask prints its port search
        est.fit(
            X,
            train[label],
            sample_weight=weights,
            init_score=init,
            categorical_feature=list(model.categorical_features) or "auto",
            callbacks=callbacks or None,
        )
    callbacks.clear()  # frees the workers' copies of the validation rows
    booster = est.booster_
    return model.attach_booster(
        booster, n_train=int(n_train), best_iteration=booster.best_iteration or None, X_valid=Xv, y_valid=y_valid
    )


def _prepare(model: Any, train: dd.DataFrame, label: str, names: list[str]) -> int:
    """``model.prepare_fit`` on a summary of the labels; returns the number of training rows.

    Classifiers learn their classes (and the Markov offset) from (weighted) label counts:
    identical to counting every row. The revenue model only needs the label range.
    """
    import dask

    prior = getattr(model, "stage_prior_column", None)
    if not isinstance(model, RevenueModel):
        keys = [prior, label] if prior else [label]
        groups = train[[*keys, WEIGHT]].groupby(keys, dropna=False)[WEIGHT].sum() if WEIGHT in train.columns else (
            train[keys].groupby(keys, dropna=False).size()
        )
        counts, n_train = dask.compute(groups, train.shape[0])
        summary = counts.reset_index(name="_count")
        y_sum = summary[label].to_numpy()
        w_sum = summary["_count"].to_numpy(dtype=np.float64)
    else:
        lo, hi, n_train = dask.compute(train[label].min(), train[label].max(), train.shape[0])
        summary = pd.DataFrame({label: [lo, hi]})
        y_sum, w_sum = summary[label].to_numpy(), None
    X_sum = pd.DataFrame(np.nan, index=range(len(summary)), columns=names, dtype=np.float64)
    if prior:
        X_sum[prior] = summary[prior].to_numpy(dtype=np.float64)
    model.prepare_fit(X_sum, y_sum, sample_weight=w_sum)
    return int(n_train)


def _init_score_frame(part: pd.DataFrame, model: Any) -> pd.DataFrame:
    raw = _init_score(model, part)
    return pd.DataFrame(raw, index=part.index, columns=[f"c{i}" for i in range(raw.shape[1])], copy=False)


_INIT_SCORE_ROWS = 1 << 16


def _init_score(model: Any, X: pd.DataFrame) -> np.ndarray | None:
    """``model.init_score(X)`` computed ``_INIT_SCORE_ROWS`` rows at a time.

    It validates its input into a float64 array: at once, that is a transient copy of a
    worker's whole training matrix at twice its float32 size.
    """
    if len(X) <= _INIT_SCORE_ROWS:
        return model.init_score(X)
    first = model.init_score(X.iloc[:_INIT_SCORE_ROWS])
    if first is None:
        return None
    out = np.empty((len(X), first.shape[1]), dtype=np.float64, order="F")
    out[:_INIT_SCORE_ROWS] = first
    for lo in range(_INIT_SCORE_ROWS, len(X), _INIT_SCORE_ROWS):
        out[lo : lo + _INIT_SCORE_ROWS] = model.init_score(X.iloc[lo : lo + _INIT_SCORE_ROWS])
    return out


class ReplicatedEarlyStopping:
    """LightGBM callback: early stopping on a validation set every worker holds in full.

    ``lightgbm.dask`` would give each worker only its own validation rows, so workers
    could stop at different rounds and dead-lock. Here every worker scores the *same*
    in-memory rows with the (synchronised) booster one iteration at a time, so all stop
    together, at the iteration :func:`lightgbm.early_stopping` picks in the in-memory fit:
    the model's metric (multi/binary log loss or Tweedie negative log-likelihood, as
    LightGBM computes them) without a strict improvement for ``patience`` rounds.

    Workers that share one process (a threaded cluster) share this object: the running
    scores are kept per booster, or the workers would add their rounds into one sum and
    stop at a round that depends on thread timing.
    """

    order = 30

    def __init__(
        self, X: np.ndarray, y: np.ndarray, offset: np.ndarray | None, objective: str, params: dict[str, Any], patience: int
    ) -> None:
        self.X = X
        self.y = y
        self.offset = offset
        self.objective = objective
        self.params = params
        self.patience = patience
        # Per booster (id of the worker's Booster): running raw scores, (best loss, its round).
        self._state: dict[int, tuple[np.ndarray, tuple[float, int]]] = {}

    def __call__(self, env: Any) -> None:
        import lightgbm as lgb

        key = id(env.model)
        if key not in self._state:
            start = np.zeros(len(self.X)) if self.offset is None else np.array(self.offset, dtype=np.float64)
            self._state[key] = (start, (np.inf, 0))
        raw, (best_loss, best) = self._state[key]
        i = env.iteration - env.begin_iteration
        raw = raw + env.model.predict(self.X, raw_score=True, start_iteration=i, num_iteration=1)
        loss = _metric(self.objective, raw, self.y, self.params)
        if loss < best_loss:
            best_loss, best = loss, i
        self._state[key] = (raw, (best_loss, best))
        if i - best >= self.patience or env.iteration == env.end_iteration - 1:
            raise lgb.callback.EarlyStopException(best, [("valid", self.objective, best_loss, False)])


def _metric(objective: str, raw: np.ndarray, y: np.ndarray, params: dict[str, Any]) -> float:
    if objective == "multiclass":
        return log_loss(y.astype(np.int64), softmax(raw, axis=1))
    if objective == "binary":
        return log_loss(y, expit(raw))
    if objective == "tweedie":
        rho = float(params["tweedie_variance_power"])
        mu = np.maximum(np.exp(raw), 1e-10)
        a = y * np.exp((1 - rho) * np.log(mu)) / (1 - rho)
        b = np.exp((2 - rho) * np.log(mu)) / (2 - rho)
        return float(np.mean(b - a))
    raise ValueError(f"no early-stopping metric for objective {objective!r}")

