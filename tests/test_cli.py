"""The command line's process-level behaviour: what importing it loads and collects, the
progress display off a terminal, and the garbage collector around a command and at exit."""

from __future__ import annotations

import gc
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import journey_ml.cli as cli

app_module = importlib.import_module("journey_ml.cli.app")  # the package's `app` is the Typer object


def test_importing_the_command_line_loads_no_compiled_kernels() -> None:
    # numba (and scipy, which its CPU target imports) load inside the commands that
    # use them: `journey-ml --help` or `validate`'s argument errors do not pay for them.
    code = "import sys, journey_ml.cli; print(sorted(m for m in ('numba', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_registering_the_commands_runs_no_garbage_collections() -> None:
    # The imports behind the commands (pandas, pydantic, typer...) make long-lived objects
    # only; without the pause they set off some 280 collections (a handful come before it).
    code = (
        "import gc; seen = []\n"
        "gc.callbacks.append(lambda phase, info: seen.append(info) if phase == 'start' else None)\n"
        "import journey_ml.cli; print(len(seen), gc.isenabled())"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    assert int(out[0]) < 20
    assert out[1] == "True"


def test_main_freezes_the_heap_at_exit_whatever_the_exit(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen: list[bool] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(True))
    monkeypatch.setattr(sys, "argv", ["journey-ml", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 0
    assert frozen == [True]
    frozen.clear()
    monkeypatch.setattr(sys, "argv", ["journey-ml", "no-such-command"])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code != 0
    assert frozen == [True]


def test_progress_is_shown_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(app_module, "console", Console(stderr=True, force_terminal=False, force_jupyter=False))
    with app_module.progress("x") as bar:
        assert bar.disable
    monkeypatch.setattr(app_module, "console", Console(stderr=True, force_terminal=True, force_jupyter=False))
    with app_module.progress("x") as bar:
        assert not bar.disable
    with app_module.progress("x", quiet=True) as bar:
        assert bar.disable


def test_features_at_leaves_the_collector_on_and_prints_its_summary(tmp_path: Path) -> None:
    import pandas as pd
    from typer.testing import CliRunner

    start = pd.Timestamp("2026-01-01", tz="UTC")
    kinds = ["ad_click", "product_view", "add_to_cart", "purchase"]
    events = pd.DataFrame(
        {
            "customer_id": [f"c{i % 5}" for i in range(60)],
            "timestamp": [(start + pd.Timedelta(hours=7 * i)).isoformat() for i in range(60)],
            "event_type": [kinds[i % 4] for i in range(60)],
        }
    )
    path = tmp_path / "events.csv"
    events.to_csv(path, index=False)
    out = tmp_path / "at.parquet"
    assert gc.isenabled()
    result = CliRunner().invoke(cli.app, ["features", str(path), "--out", str(out), "--at", "2026-01-15"])
    assert result.exit_code == 0, result.output
    assert gc.isenabled()
    rows = len(pd.read_parquet(out))
    assert rows == 5
    assert f"wrote {rows:,} rows ({rows:,} customers, 1 cutoff(s)" in " ".join(result.output.split())
