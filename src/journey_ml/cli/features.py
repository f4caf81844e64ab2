"""``journey-ml features``: feature rows at one time, or labelled weekly snapshots."""

from __future__ import annotations

import gc
from collections.abc import Sized
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from journey_ml.cli.app import app, console, print_json, progress, user_errors
from journey_ml.runtime import gc_paused

if TYPE_CHECKING:
    import pandas as pd

    from journey_ml.contract import JourneyMap


class Engine(StrEnum):
    """Where features (and training/scoring) run."""

    pandas = "pandas"
    dask = "dask"


ENGINE_HELP = (
    "pandas: one process, in memory. dask: EVENTS is a Parquet directory (or glob), read and "
    "processed partition by partition on a Dask cluster; output is partitioned Parquet (a directory)."
)
SCHEDULER_HELP = "Dask scheduler address, e.g. tcp://host:8786 (default: a local cluster sized to the machine)."


@app.command()
def features(
    events: Annotated[Path, typer.Argument(help="Event file (CSV/Parquet/JSONL).")],
    journey_map: Annotated[Path | None, typer.Option("--journey-map", "-m", help="Journey map YAML (default: the e-commerce map).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Output file; .parquet/.pq or .csv.")] = Path("features.parquet"),
    at: Annotated[str | None, typer.Option("--at", help="Features of customers active at this time (ISO-8601; naive = UTC) instead of snapshots.")] = None,
    cadence_days: Annotated[float, typer.Option("--cadence-days", help="Days between snapshot cutoffs.")] = 7.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary on stdout.")] = False,
    engine: Annotated[Engine, typer.Option("--engine", help=ENGINE_HELP)] = Engine.pandas,
    scheduler: Annotated[str | None, typer.Option("--scheduler", help=SCHEDULER_HELP)] = None,
) -> None:
    """Write features for customers active at --at, or (without --at) the labelled
    weekly snapshots used for training, with the feature spec fitted on all events."""
    if engine is Engine.dask:
        _features_dask(events, journey_map, out, at, cadence_days, json_out, scheduler)
        return
    suffix = out.suffix.lower()
    if suffix not in (".parquet", ".pq", ".csv"):
        raise typer.BadParameter(f"unsupported output suffix '{out.suffix}'; use .parquet, .pq or .csv", param_hint="--out")
    # No cyclic garbage collection while building, imports included: imports and the
    # command's arrays make no garbage cycles, and collections over the imported
    # libraries' objects cost a noticeable share of the command. The summary is printed
    # inside the pause and what the command made is frozen at its end (as ``main`` does at
    # exit): re-enabling first would start a collection over all of it.
    with gc_paused():
        frame, n_cutoffs, n_features = _build_features(events, journey_map, out, at, cadence_days, quiet=json_out)
        summary = {
            "rows": len(frame),
            "customers": int(frame["customer_id"].nunique()),
            "cutoffs": n_cutoffs,
            "features": n_features,
            "out": str(out),
        }
        if json_out:
            print_json(summary)
        else:
            console.print(
                f"wrote {summary['rows']:,} rows ({summary['customers']:,} customers, "
                f"{n_cutoffs} cutoff(s), {summary['features']} features) to {out}"
            )
        del frame
        gc.freeze()


def _build_features(
    events: Path, journey_map: Path | None, out: Path, at: str | None, cadence_days: float, *, quiet: bool
) -> tuple[pd.DataFrame, int, int]:
    """``features`` with the pandas engine: (the written frame, its cutoffs, its feature count)."""
    import pandas as pd

    from journey_ml.contract import load_journey_map
    from journey_ml.eventlog import EventLog
    from journey_ml.features import FeatureSpec, features_at
    from journey_ml.ingest import load_checked

    with user_errors():
        jm = load_journey_map(journey_map)
        with progress("building features", quiet=quiet) as bar:
            task = bar.tasks[0].id
            bar.update(task, description="loading events")
            checked = load_checked(events, jm)
            if at is not None:
                try:
                    when = pd.Timestamp(at)
                except ValueError as exc:
                    raise typer.BadParameter(f"cannot parse time '{at}'", param_hint="--at") from exc
                bar.update(task, description="fitting the feature spec")
                # Encoded once, from validation's codes (no frame of event strings is built).
                log = EventLog.from_accepted(checked.accepted, jm)
                del checked  # the file's columns are not needed any more
                spec = FeatureSpec.fit(log, jm, until=when)
                bar.update(task, description="computing features")
                frame = features_at(log, spec, when)
                n_cutoffs = 1
            else:
                from journey_ml.labels.cutoffs import make_cutoffs
                from journey_ml.labels.snapshots import build_snapshots

                loaded = checked.result().events
                cutoffs = make_cutoffs(loaded, jm, cadence_days=cadence_days)
                _require_cutoffs(cutoffs, jm)
                bar.update(task, description="fitting the feature spec")
                log = EventLog.build(loaded, jm)
                spec = FeatureSpec.fit(log, jm)
                bar.update(task, description=f"building snapshots at {len(cutoffs)} cutoffs")
                frame = build_snapshots(log, jm, spec, cutoffs=cutoffs)
                n_cutoffs = len(cutoffs)
            bar.update(task, description=f"writing {out}")
            out.parent.mkdir(parents=True, exist_ok=True)
            if out.suffix.lower() == ".csv":
                frame.to_csv(out, index=False)
            else:
                frame.to_parquet(out, index=False)
    return frame, n_cutoffs, len(spec.feature_names)


def _features_dask(
    events: Path, journey_map: Path | None, out: Path, at: str | None, cadence_days: float, json_out: bool, scheduler: str | None
) -> None:
    """``features --engine dask``: the same features, partition by partition, to a Parquet directory."""
    import dask.dataframe as dd
    import pandas as pd

    from journey_ml.contract import load_journey_map
    from journey_ml.contract.time import to_utc
    from journey_ml.pipeline.engines import dask_frames, dask_io

    if out.suffix.lower() == ".csv":
        raise typer.BadParameter("the dask engine writes partitioned Parquet: give a directory", param_hint="--out")
    with user_errors():
        jm = load_journey_map(journey_map)
        with progress("building features (dask)", quiet=json_out) as bar, dask_io.client(scheduler) as _client:
            task = bar.tasks[0].id
            loaded = dask_io.read_events(events, jm, validate=True)
            if at is not None:
                try:
                    when = to_utc(at)
                except ValueError as exc:
                    raise typer.BadParameter(f"cannot parse time '{at}'", param_hint="--at") from exc
                bar.update(task, description="fitting the feature spec")
                # The pandas engine fits on events <= at; fit_spec keeps events < before.
                spec = dask_io.fit_spec(loaded, jm, before=when + pd.Timedelta(1, "ns"))
                frame = dask_frames.features_at(loaded, spec, when)
                n_cutoffs = 1
            else:
                cutoffs = dask_io.make_cutoffs(loaded, jm, cadence_days=cadence_days)
                _require_cutoffs(cutoffs, jm)
                bar.update(task, description="fitting the feature spec")
                spec = dask_io.fit_spec(loaded, jm)
                frame = dask_frames.build_snapshots(loaded, jm, spec, cutoffs=cutoffs)
                n_cutoffs = len(cutoffs)
            bar.update(task, description=f"computing and writing {out}")
            frame.to_parquet(str(out), write_index=False)
            ids = dd.read_parquet(str(out), columns=["customer_id"])["customer_id"]
            rows, customers = dd.compute(ids.size, ids.nunique())
    summary = {
        "rows": int(rows),
        "customers": int(customers),
        "cutoffs": n_cutoffs,
        "features": len(spec.feature_names),
        "out": str(out),
        "engine": "dask",
        "partitions": int(frame.npartitions),
    }
    if json_out:
        print_json(summary)
        return
    console.print(
        f"wrote {summary['rows']:,} rows ({summary['customers']:,} customers, {n_cutoffs} cutoff(s), "
        f"{summary['features']} features) to {out}/ in {summary['partitions']} Parquet parts"
    )


def _require_cutoffs(cutoffs: Sized, jm: JourneyMap) -> None:
    """Both engines refuse data too short for one labelled snapshot, with the same words."""
    if len(cutoffs) == 0:
        raise typer.BadParameter(
            "the events span too little time for one cutoff with history and a full "
            f"{jm.horizon_days:g}-day label window",
            param_hint="EVENTS",
        )
