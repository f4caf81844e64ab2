"""The HTML report: self-contained, and it renders in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from journey_ml.explain import IMPROVEMENT_COLUMNS
from journey_ml.report import build_report, stage_funnel


def _improvements() -> pd.DataFrame:
    names = ["checkout_error", "page_timeout", "late_delivery"]
    df = pd.DataFrame(
        {
            "rank": [1, 2, 3],
            "touchpoint": names,
            "touchpoint_group": ["checkout_start", "product_view", "delivery"],
            "expected_impact": [1200.0, 400.0, 90.0],
            "unit": ["revenue"] * 3,
            "ci_low": [900.0, 250.0, 10.0],
            "ci_high": [1500.0, 600.0, 160.0],
            "customers_affected": [80, 300, 40],
            "share_affected": [0.1, 0.3, 0.04],
            "rows_affected": [85, 420, 41],
            "mean_drop_off_points": [6.0, 1.2, 2.0],
            "worst_stage": ["decision", "consideration", "purchase"],
            "worst_stage_share": [0.7, 0.5, 0.8],
            "counterfactual_impact": [1100.0, 420.0, 80.0],
        }
    )
    return df[list(IMPROVEMENT_COLUMNS)]


def _report(make_events, journey_map) -> str:  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ev = make_events(
        [
            ("a", "2026-01-01", "ad_click"),
            ("a", "2026-01-02", "product_view"),
            ("a", "2026-01-03", "purchase", 20.0),
            ("b", "2026-01-01", "ad_click"),
            ("c", "2026-01-01", "product_view"),
        ]
    )
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    comparators = pd.DataFrame(
        {"touchpoint": ["checkout_error", "page_timeout", "late_delivery"], "last_touch_rank": [2, 1, 3], "markov_rank": [1, 2, 3]}
    )
    return build_report(_improvements(), comparators, stage_funnel(ev, journey_map), {"shap": fig}, {"model": "test-1"})


def test_funnel_counts_and_drop_off(make_events, journey_map) -> None:  # type: ignore[no-untyped-def]
    ev = make_events([("a", "2026-01-01", "ad_click"), ("a", "2026-01-02", "purchase", 5.0), ("b", "2026-01-01", "ad_click")])
    f = stage_funnel(ev, journey_map).set_index("stage")
    assert f.loc["awareness", "customers"] == 2
    assert f.loc["purchase", "customers"] == 1
    assert f.loc["awareness", "drop_off_to_next"] == pytest.approx(0.5)
    assert np.isnan(f["drop_off_to_next"].iloc[-1])


def test_report_is_self_contained(make_events, journey_map) -> None:  # type: ignore[no-untyped-def]
    page = _report(make_events, journey_map)
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*['"]?\s*(https?:)?//""", page, flags=re.I)
    assert "http" not in " ".join(re.findall(r"""(?:src|href)=['"][^'"]*""", page))
    assert page.count("data:image/png;base64,") >= 3  # bar chart, SHAP figure, funnel
    for name in ("checkout_error", "page_timeout", "late_delivery", "last_touch_rank", "awareness"):
        assert name in page


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )


@pytest.mark.slow
@pytest.mark.e2e
def test_report_renders_in_headless_chromium(make_events, journey_map, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium not found (apt-get install -y chromium); cannot render the report")
    page = tmp_path / "report.html"
    page.write_text(_report(make_events, journey_map), encoding="utf-8")
    png = tmp_path / "shot.png"
    flags = [
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    dom = subprocess.run([chromium, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<tr>") >= 4 and "checkout_error" in dom.stdout
    assert dom.stdout.count("<img") >= 3 and "data:image/png;base64," in dom.stdout
    shot = subprocess.run(
        [chromium, *flags, f"--screenshot={png}", "--window-size=1280,2000", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert shot.returncode == 0 and png.exists(), shot.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(png)
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert float(pixels[..., :3].std()) > 0.02  # not a blank page
