"""``journey-ml features``: feature rows at one time, or labelled weekly snapshots."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from journey_ml.cli.app import app, console, print_json, progress, user_errors


@app.command()
def features(
    events: Annotated[Path, typer.Argument(help="Event file (CSV/Parquet/JSONL).")],
    journey_map: Annotated[Path | None, typer.Option("--journey-map", "-m", help="Journey map YAML (default: the e-commerce map).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file; .parquet/.pq or .csv.")] = Path("features.parquet"),
    at: Annotated[str | None, typer.Option("--at", help="Features of customers active at this time (ISO-8601; naive = UTC) instead of snapshots.")] = None,
    cadence_days: Annotated[float, typer.Option("--cadence-days", help="Days between snapshot cutoffs.")] = 7.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
) -> None:
    """Write features for customers active at --at, or (without --at) the labelled
    weekly snapshots used for training, with the feature spec fitted on all events."""
    from journey_ml.config import load_journey_map
    from journey_ml.events import load_events
    from journey_ml.features import FeatureSpec, features_at
    from journey_ml.snapshots import build_snapshots, make_cutoffs

    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv"):
        raise typer.BadParameter(f"unsupported output suffix '{out.suffix}'; use .parquet, .pq or .csv", param_hint="--out")
    with user_errors():
        jm = load_journey_map(journey_map)
        with progress("building features", quiet=json_out) as bar:
            task = bar.tasks[0].id
            bar.update(task, description="loading events")
            loaded = load_events(events, jm).events
            if at is not None:
                try:
                    when = pd.Timestamp(at)
                except ValueError as exc:
                    raise typer.BadParameter(f"cannot parse time '{at}'", param_hint="--at") from exc
                bar.update(task, description="fitting the feature spec")
                spec = FeatureSpec.fit(loaded.loc[loaded["timestamp"] <= _utc(when)], jm)
                bar.update(task, description="computing features")
                frame = features_at(loaded, spec, when)
                n_cutoffs = 1
            else:
                cutoffs = make_cutoffs(loaded, jm, cadence_days=cadence_days)
                if len(cutoffs) == 0:
                    raise typer.BadParameter(
                        "the events span too little time for one cutoff with history and a full "
                        f"{jm.horizon_days:g}-day label window",
                        param_hint="EVENTS",
                    )
                bar.update(task, description="fitting the feature spec")
                spec = FeatureSpec.fit(loaded, jm)
                bar.update(task, description=f"building snapshots at {len(cutoffs)} cutoffs")
                frame = build_snapshots(loaded, jm, spec, cutoffs=cutoffs)
                n_cutoffs = len(cutoffs)
            bar.update(task, description=f"writing {out}")
            out.parent.mkdir(parents=True, exist_ok=True)
            if suffix == ".csv":
                frame.to_csv(out, index=False)
            else:
                frame.to_parquet(out, index=False)
    summary = {
        "rows": len(frame),
        "customers": int(frame["customer_id"].nunique()),
        "cutoffs": n_cutoffs,
        "features": len(spec.feature_names),
        "out": str(out),
    }
    if json_out:
        print_json(summary)
        return
    console.print(
        f"wrote {summary['rows']:,} rows ({summary['customers']:,} customers, "
        f"{n_cutoffs} cutoff(s), {summary['features']} features) to {out}"
    )


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    t = pd.Timestamp(ts)
    return t.tz_localize("UTC") if t.tzinfo is None else t.tz_convert("UTC")
