"""Drop-off on the real CDNOW purchase log: our LightGBM drop-off model vs BG/NBD (``lifetimes``).

Run: ``.venv/bin/python benchmarks/bench_cdnow.py [--cutoffs 1997-12-31,1998-02-15,1998-03-31] [--horizons 30,90]``.

Data: ``CDNOW_master.txt`` (23,570 customers who first bought in Q1 1997, purchases to
June 1998), read straight out of the ``lifetimes==0.11.3`` wheel that the benchmark fetches
with ``pip download --no-deps`` into ``bench_output/cdnow`` (never committed).

Protocol (the same customers and the same holdout window for both models):

* evaluation cutoffs ``T`` (default 1997-12-31, 1998-02-15, 1998-03-31) and horizons ``h``
  (default 30 and 90 days), holdout window ``(T, T + h]``; target ``drop_off = 1`` when the
  customer makes no purchase in the window;
* **ours**: journey map ``pipelines/journey_maps/cdnow.yaml`` (purchase -> retention) with
  ``horizon_days = h``; training snapshots every ``--cadence`` days built with
  :func:`journey_ml.labels.snapshots.build_snapshots` from events ``<= T`` only, cutoffs whose
  label windows end by ``T - h`` for training and the cutoff ``T - h`` for validation/early
  stopping and calibration; the feature spec (vocabularies and the BG/NBD fits of the BTYD
  features, each fit on purchases before its own time) fitted on events before the
  validation cutoff; :class:`journey_ml.models.DropOffModel`
  with the ``pipelines/train.yaml`` model defaults; scored on the snapshot at ``T``;
* **BG/NBD**: ``lifetimes.BetaGeoFitter`` fitted on every purchase ``<= T`` (daily
  periods) in a separate venv (``bench_output/lifetimes-venv``: lifetimes needs older
  pandas/numpy), through CSV/JSON files. Drop-off score = 1 - P(at least one purchase in
  (T, T+h]) = 1 - P(alive at T) * (1 - ((alpha + T_c) / (alpha + T_c + h)) ** (r + x)):
  under BG/NBD a customer can only die right after a purchase, so a customer alive at T
  makes no purchase in the window with the Poisson probability under the posterior
  Gamma(r + x, alpha + T_c) of the purchase rate. (The issue's "1 - expected purchases /
  P(alive)" is not a probability; this is the exact model quantity it gestures at.)

Prints a markdown table with ROC-AUC, PR-AUC and Brier score for both at every (cutoff,
horizon), and whether issue 18's bar (ROC-AUC >= BG/NBD's + 0.01, Brier <= BG/NBD's) holds.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench_output" / "cdnow"
VENV = ROOT / "bench_output" / "lifetimes-venv"
WHEEL_MEMBER = "lifetimes/datasets/CDNOW_master.txt"
JOURNEY_MAP = ROOT / "pipelines" / "journey_maps" / "cdnow.yaml"

BGNBD_SCRIPT = r'''
import json, sys
import numpy as np, pandas as pd
from lifetimes import BetaGeoFitter
from lifetimes.utils import summary_data_from_transaction_data

src, dst, cutoff, horizon = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
tx = pd.read_csv(src, dtype={"customer_id": str}, parse_dates=["date"])
summary = summary_data_from_transaction_data(tx, "customer_id", "date", observation_period_end=cutoff, freq="D")
bgf = BetaGeoFitter(penalizer_coef=0.0).fit(summary["frequency"], summary["recency"], summary["T"])
p_alive = bgf.conditional_probability_alive(summary["frequency"], summary["recency"], summary["T"])
r, alpha = bgf.params_["r"], bgf.params_["alpha"]
x, age = summary["frequency"].to_numpy(float), summary["T"].to_numpy(float)
no_buy_if_alive = ((alpha + age) / (alpha + age + horizon)) ** (r + x)
expected = bgf.conditional_expected_number_of_purchases_up_to_time(horizon, summary["frequency"], summary["recency"], summary["T"])
out = pd.DataFrame({"customer_id": summary.index.astype(str), "p_alive": np.asarray(p_alive),
                    "p_buy": np.asarray(p_alive) * (1.0 - no_buy_if_alive), "expected_purchases": np.asarray(expected)})
out.to_csv(dst, index=False)
print(json.dumps({k: float(v) for k, v in bgf.params_.items()}))
'''


# ---------------------------------------------------------------------------- data
def fetch_cdnow() -> pd.DataFrame:
    """Transactions ``customer_id`` (str, zero-padded), ``date`` (UTC), ``revenue`` from the wheel."""
    OUT.mkdir(parents=True, exist_ok=True)
    wheels = sorted(OUT.glob("[Ll]ifetimes-0.11.3-*.whl"))
    if not wheels:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "lifetimes==0.11.3", "-d", str(OUT), "-q"],
            check=True,
        )
        wheels = sorted(OUT.glob("[Ll]ifetimes-0.11.3-*.whl"))
    with zipfile.ZipFile(wheels[0]) as wheel:
        raw = wheel.read(WHEEL_MEMBER).decode("ascii")
    frame = pd.read_csv(
        io.StringIO(raw),
        sep=r"\s+",
        header=0,
        names=["customer_id", "date", "cds", "revenue"],
        dtype={"customer_id": "str", "date": "str"},
    )
    frame["date"] = pd.to_datetime(frame["date"], format="%Y%m%d", utc=True)
    return frame


def canonical_events(tx: pd.DataFrame) -> pd.DataFrame:
    """One purchase event per customer-day (same-day orders merged, as BG/NBD's daily periods do)."""
    daily = tx.groupby(["customer_id", "date"], sort=True, as_index=False)["revenue"].sum()
    events = pd.DataFrame(
        {
            "customer_id": daily["customer_id"].astype("str"),
            "timestamp": daily["date"].astype("datetime64[ns, UTC]"),
            "event_type": pd.Series("purchase", index=daily.index, dtype="str"),
            "channel": pd.Series("unknown", index=daily.index, dtype="str"),
            "revenue": daily["revenue"].astype("float64").clip(lower=0.0),
        }
    )
    events["session_id"] = events["customer_id"] + "#" + daily["date"].dt.strftime("%Y%m%d")
    return events.sort_values(["customer_id", "timestamp"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------- ours
def ours(
    events: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int, cadence_days: int, seed: int,
    model: dict | None = None, trials: int = 0, valid_cutoffs: int = 1,
) -> tuple[pd.DataFrame, dict]:
    """Drop-off probabilities at ``cutoff`` from our pipeline; columns customer_id, drop_off, score.

    ``model`` overrides the ``pipelines/train.yaml`` model parameters (after ``min_child_samples=20``);
    ``trials`` > 0 tunes them first with Optuna on the validation cutoff, as ``journey-ml train`` does;
    ``valid_cutoffs`` > 1 validates (early stopping, calibration) on that many cutoffs ending at ``T - h``."""
    from dataclasses import replace

    from journey_ml.contract import JourneyMap, TrainConfig
    from journey_ml.features import FeatureSpec
    from journey_ml.labels.cutoffs import make_cutoffs
    from journey_ml.labels.snapshots import build_snapshots
    from journey_ml.models.tasks import make_model
    from journey_ml.models.tuning import tune
    from journey_ml.pipeline.splits import SnapshotSplits

    jm = JourneyMap.from_yaml(JOURNEY_MAP)
    if jm.horizon_days != horizon_days:
        jm = JourneyMap.from_dict({**jm.to_dict(), "horizon_days": horizon_days})
    config = TrainConfig.from_yaml(ROOT / "pipelines" / "train.yaml", {"seed": seed})
    config = replace(config, model=replace(config.model, **{"min_child_samples": 20, **(model or {})}))
    horizon = pd.Timedelta(days=horizon_days)
    seen = events.loc[events["timestamp"] <= cutoff].reset_index(drop=True)
    # Validation cutoffs T - h and ``valid_cutoffs - 1`` more, ``cadence_days`` apart before it.
    valid_cuts = pd.DatetimeIndex([cutoff - horizon - pd.Timedelta(days=k * cadence_days) for k in range(valid_cutoffs)][::-1])
    valid_cut = valid_cuts[0]
    # Every training label window ends before the validation cutoff (embargo), and the
    # validation window ends at T: nothing after T is ever used for fitting.
    train_cuts = make_cutoffs(seen, jm, cadence_days=cadence_days, end=valid_cut - horizon, min_history_days=28)
    spec = FeatureSpec.fit(seen.loc[seen["timestamp"] < valid_cut], jm, btyd=True)
    train = build_snapshots(seen, jm, spec, cutoffs=train_cuts)
    valid = build_snapshots(seen, jm, spec, cutoffs=valid_cuts)
    test = build_snapshots(events, jm, spec, cutoffs=pd.DatetimeIndex([cutoff]))
    splits = SnapshotSplits(spec=spec, train=train, valid=valid, test=test)
    start = time.perf_counter()
    best: dict = {}
    if trials:
        # As `journey-ml train` does: seeded Optuna on the validation cutoff, trials on a sample.
        sample = train.sample(n=min(config.tuning.max_rows, len(train)), random_state=seed).sort_index()
        best = tune(
            "drop_off", lambda params: make_model("drop_off", splits.spec, config, params),
            sample[spec.feature_names], sample["drop_off"].to_numpy(), splits.X("valid"), valid["drop_off"].to_numpy(),
            trials=trials, timeout_seconds=None, seed=seed, log_to_mlflow=False,
        ).best_params  # fmt: skip
    model = make_model("drop_off", splits.spec, config, best)
    model.fit(splits.X("train"), train["drop_off"].to_numpy(), X_valid=splits.X("valid"), y_valid=valid["drop_off"].to_numpy())
    proba = model.predict_proba(splits.X("test"))
    score = proba[:, 1] if proba.ndim == 2 else proba
    info = {
        "train_rows": len(train),
        "train_cutoffs": len(train_cuts),
        "first_train_cutoff": str(train_cuts[0].date()),
        "last_train_cutoff": str(train_cuts[-1].date()),
        "valid_cutoff": str(valid_cut.date()),
        "fit_seconds": round(time.perf_counter() - start, 1),
        "features": len(spec.feature_names),
        "tuned": best,
    }
    return pd.DataFrame({"customer_id": test["customer_id"].astype("str").to_numpy(), "drop_off": test["drop_off"].to_numpy(), "ours": score}), info


# ---------------------------------------------------------------------------- BG/NBD
def lifetimes_python() -> Path:
    """Python of a separate venv with lifetimes (created on first use)."""
    python = VENV / "bin" / "python"
    if python.exists() and subprocess.run([str(python), "-c", "import lifetimes"], capture_output=True).returncode == 0:
        return python
    if not python.exists():
        # The system interpreter, not this venv's: the lifetimes venv must not inherit our pins.
        base = shutil.which("python3.11") or shutil.which("python3") or sys.executable
        subprocess.run([base, "-m", "venv", str(VENV)], check=True)
    # lifetimes 0.11.3 (2020) predates pandas 2.2 / numpy 2 / scipy 1.13 API removals.
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "lifetimes==0.11.3", "pandas<2.2", "numpy<2", "scipy<1.13"],
        check=True,
    )
    return python


def bgnbd(tx: pd.DataFrame, cutoff: pd.Timestamp, horizon_days: int) -> tuple[pd.DataFrame, dict]:
    python = lifetimes_python()
    src, dst, script = OUT / "calibration.csv", OUT / "bgnbd_scores.csv", OUT / "bgnbd.py"
    calib = tx.loc[tx["date"] <= cutoff, ["customer_id", "date"]].copy()
    calib["date"] = calib["date"].dt.strftime("%Y-%m-%d")
    calib.to_csv(src, index=False)
    script.write_text(BGNBD_SCRIPT, encoding="utf-8")
    start = time.perf_counter()
    done = subprocess.run(
        [str(python), str(script), str(src), str(dst), cutoff.strftime("%Y-%m-%d"), str(horizon_days)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"BG/NBD subprocess failed:\n{done.stderr[-3000:]}")
    params = json.loads(done.stdout.strip().splitlines()[-1])
    params["fit_seconds"] = round(time.perf_counter() - start, 1)
    scores = pd.read_csv(dst, dtype={"customer_id": "str"})
    scores["bgnbd"] = 1.0 - scores["p_buy"]
    return scores[["customer_id", "bgnbd", "p_alive", "expected_purchases"]], params


# ---------------------------------------------------------------------------- report
def measure(tx: pd.DataFrame, events: pd.DataFrame, cutoff: pd.Timestamp, horizon: int, cadence: int, seed: int) -> dict:
    """Both models at one (cutoff, horizon): metrics on the same customers, plus fit details."""
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    ours_scores, ours_info = ours(events, cutoff, horizon, cadence, seed)
    bg_scores, bg_info = bgnbd(tx, cutoff, horizon)
    both = ours_scores.merge(bg_scores, on="customer_id", how="inner", validate="one_to_one")
    if len(both) != len(ours_scores):
        raise RuntimeError(f"{len(ours_scores) - len(both)} scored customers are missing from the BG/NBD output")
    y = both["drop_off"].to_numpy()
    # Sanity: the holdout label is "no purchase in (T, T+h]" for both models.
    window = events.loc[(events["timestamp"] > cutoff) & (events["timestamp"] <= cutoff + pd.Timedelta(days=horizon))]
    assert np.array_equal(y, (~both["customer_id"].isin(window["customer_id"])).to_numpy().astype(y.dtype))
    out = {"cutoff": str(cutoff.date()), "horizon": horizon, "n": len(both), "rate": float(y.mean()), "ours_info": ours_info, "bg_info": bg_info}
    for col in ("ours", "bgnbd"):
        p = both[col].to_numpy()
        out[col] = {"auc": roc_auc_score(y, p), "pr_auc": average_precision_score(y, p), "brier": brier_score_loss(y, p)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cutoffs", default="1997-12-31,1998-02-15,1998-03-31", help="comma-separated evaluation cutoffs")
    parser.add_argument("--horizons", default="30,90", help="comma-separated horizons (days)")
    parser.add_argument("--cadence", type=int, default=14, help="days between training snapshot cutoffs")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", default=None, help="also write the markdown section to this file")
    args = parser.parse_args()
    load_before = os.getloadavg()
    tx = fetch_cdnow()
    events = canonical_events(tx)
    results = [
        measure(tx, events, pd.Timestamp(c, tz="UTC"), int(h), args.cadence, args.seed)
        for h in args.horizons.split(",")
        for c in args.cutoffs.split(",")
    ]
    load_after = os.getloadavg()
    rows = []
    for r in results:
        o, b = r["ours"], r["bgnbd"]
        holds = o["auc"] >= b["auc"] + 0.01 and o["brier"] <= b["brier"]
        rows.append(
            f"| {r['cutoff']} | {r['horizon']} | {r['n']:,} | {r['rate']:.3f} | {o['auc']:.4f} | {b['auc']:.4f} | "
            f"{o['auc'] - b['auc']:+.4f} | {o['brier']:.4f} | {b['brier']:.4f} | {o['pr_auc']:.4f} | {b['pr_auc']:.4f} | "
            f"{r['ours_info']['fit_seconds']} | {r['bg_info']['fit_seconds']} | {'yes' if holds else 'no'} |"
        )
    text = "\n".join(
        [
            "### CDNOW drop-off: journey_ml vs BG/NBD (`benchmarks/bench_cdnow.py`)",
            "",
            f"- machine: {platform.node()} · {os.cpu_count()} cores · Python {platform.python_version()} · "
            f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC · load average {load_before[0]:.1f} → {load_after[0]:.1f}",
            f"- data: CDNOW_master ({len(tx):,} transactions, {tx['customer_id'].nunique():,} customers, "
            f"{len(events):,} customer-days); every customer is scored at each cutoff by both models; "
            "drop-off = no purchase in (cutoff, cutoff + horizon]",
            f"- ours: journey map `cdnow.yaml` with the horizon set, training cutoffs every {args.cadence} days whose label "
            "windows end by the validation cutoff (cutoff − horizon), spec (and its BG/NBD feature fits) on events before "
            "the validation cutoff; BG/NBD: `lifetimes.BetaGeoFitter` on every purchase ≤ cutoff (separate venv), "
            "score 1 − P(≥ 1 purchase in the horizon)",
            "- bar (issue 18): ROC-AUC ≥ BG/NBD's + 0.01 and Brier ≤ BG/NBD's",
            "",
            "| cutoff | horizon (d) | customers | drop-off rate | ROC-AUC ours | ROC-AUC BG/NBD | Δ AUC | Brier ours | "
            "Brier BG/NBD | PR-AUC ours | PR-AUC BG/NBD | fit s ours | fit s BG/NBD | bar holds |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
            *rows,
        ]
    )
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")
    print(json.dumps([{k: v for k, v in r.items()} for r in results], default=float))


if __name__ == "__main__":
    main()
