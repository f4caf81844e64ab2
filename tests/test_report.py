"""The journey-map report: the map computed from the data, its words, segments and the page.

Hand-made logs with known answers pin the journey computations; the page is built for
every journey shape of the real-logs matrix (tests/test_shapes.py) from small data; the
CLI writes it for a trained bundle, ``GET /report`` serves it, and headless Chromium
loads it (tests/test_report_browser.py).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from journey_ml.contract import JourneyMap
from journey_ml.explain import IMPROVEMENT_COLUMNS
from journey_ml.ingest import validate_events
from journey_ml.labels.shape import NO_FRICTIONS
from journey_ml.report import SECTIONS, build_page, journey_data
from journey_ml.report.journey import END_EXIT, END_SILENT, customer_segments
from journey_ml.report.kpis import segment_differences
from journey_ml.report.sections import ReportInputs, fix_sentence
from journey_ml.report.text import amount, days, human, pct
from tests.conftest import canonical
from tests.test_shapes import SHAPES, Shape, shape_events, shape_map

SECTION_IDS = [sid for sid, _ in SECTIONS]


def visible_text(page: str) -> str:
    """The page without its scripts, styles and SVG markup: what a reader sees as text."""
    page = page.split("</head>", 1)[-1]  # the head holds plotly's JS (megabytes)
    page = re.sub(r"<(script|style|svg)\b.*?</\1>", " ", page, flags=re.S)
    return re.sub(r"<[^>]+>", " ", page)


def assert_self_contained(page: str) -> None:
    """No element loads anything from outside the file (plotly's JS is inline)."""
    head, body = page.split("</head>", 1)
    markup = re.sub(r"<script\b[^>]*>.*?</script>", "<script></script>", head, count=1, flags=re.S) + body
    assert not re.search(r"<script[^>]*\bsrc=", markup)
    assert not re.search(r"""\b(src|href)\s*=\s*['"]?\s*(https?:)?//""", markup, flags=re.I)
    assert "cdn.plot.ly" not in markup
    assert "Plotly.newPlot" in page and len(page) > 3_000_000  # the library itself is in the page


# ---------------------------------------------------------------------------- the map from data
def test_journey_counts_times_flows_and_frictions(journey_map: JourneyMap) -> None:
    ev = canonical(
        [
            ("a", "2026-01-01T00:00:00", "ad_click"),
            ("a", "2026-01-02T00:00:00", "product_view"),
            ("a", "2026-01-03T00:00:00", "add_to_cart"),
            ("a", "2026-01-05T00:00:00", "purchase", 20.0),
            ("b", "2026-01-01T00:00:00", "ad_click"),
            ("b", "2026-01-03T00:00:00", "product_view"),
            ("b", "2026-01-03T10:00:00", "checkout_error"),
            ("b", "2026-01-04T00:00:00", "unsubscribe"),
            ("c", "2026-01-01T00:00:00", "product_view"),
            ("d", "2026-02-09T00:00:00", "ad_click"),
        ]
    )
    data = journey_data(ev, journey_map, at="2026-02-10")
    st = data.stages.set_index("stage")
    assert st["customers"].tolist() == [4, 3, 1, 1, 0, 0]
    assert st.loc["awareness", "to_next"] == pytest.approx(3 / 4)
    assert st.loc["consideration", "to_next"] == pytest.approx(1 / 3)
    assert st.loc["consideration", "median_days_to_next"] == pytest.approx(1.0)  # a: Jan 2 -> Jan 3
    assert st.loc["decision", "median_days_to_next"] == pytest.approx(2.0)
    # b exited, c and a went silent (> 30 days), d is still active.
    assert st.loc["consideration", "dropped_here"] == 2 and st.loc["consideration", "drop_off_rate"] == pytest.approx(2 / 3)
    assert st.loc["awareness", "dropped_here"] == 0 and st.loc["purchase", "dropped_here"] == 1
    assert st.loc["purchase", "value"] == pytest.approx(20.0) and st["value"].sum() == pytest.approx(20.0)
    flows = {(f.source, f.target): f.customers for f in data.flows.itertuples(index=False)}
    assert flows[("awareness", "consideration")] == 2 and flows[("consideration", "decision")] == 1
    assert flows[("consideration", END_EXIT)] == 1 and flows[("consideration", END_SILENT)] == 1
    assert flows[("purchase", END_SILENT)] == 1 and flows[("awareness", "still active")] == 1
    fr = data.frictions.set_index("friction")
    assert fr.loc["checkout_error", "occurrences"] == 1 and fr.loc["checkout_error", "stage"] == "consideration"
    assert fr.loc["page_timeout", "occurrences"] == 0 and np.isnan(fr.loc["page_timeout", "amount"])
    tps = data.touchpoints[data.touchpoints["stage"] == "awareness"]
    assert tps.iloc[0]["touchpoint"] == "ad_click · direct" and tps.iloc[0]["events"] == 3
    summary = data.summary()
    assert summary["stages"]["consideration"] == {"customers": 3, "to_next": pytest.approx(1 / 3, abs=1e-6)}


def test_moments_of_truth_find_the_touchpoint_that_moves_customers_on(journey_map: JourneyMap) -> None:
    rows = []
    for i in range(60):
        cid = f"c{i:02d}"
        rows.append((cid, "2026-01-01T00:00:00", "product_view"))
        if i < 20:  # read content: 18 of 20 go on to decision
            rows.append((cid, "2026-01-02T00:00:00", "content_read"))
            if i < 18:
                rows.append((cid, "2026-01-03T00:00:00", "add_to_cart"))
        elif i < 24:  # 4 of the 40 others go on
            rows.append((cid, "2026-01-03T00:00:00", "add_to_cart"))
    data = journey_data(canonical(rows), journey_map)
    top = data.moments.iloc[0]
    assert (top["stage"], top["touchpoint"]) == ("consideration", "content_read · direct")
    assert top["rate_with"] == pytest.approx(0.9) and top["rate_without"] == pytest.approx(0.1)
    assert top["outcome"] == "reached decision"


def test_numbers_and_the_fix_sentence_read_plainly() -> None:
    assert human(26_712) == "26,700" and human(0.01234) == "0.0123" and human(float("nan")) == "–"
    assert amount(26_712, "revenue", "$") == "$26,700" and amount(-1234, "revenue", "$") == "−$1,230"
    assert pct(0.1106) == "11%" and pct(0.0456) == "4.6%" and days(0.5) == "12 h" and days(15.2) == "15 d"
    row = SimpleNamespace(touchpoint="checkout_error", expected_impact=26_712.0, ci_low=24_391.0, ci_high=29_612.0,
                          customers_affected=499, worst_stage="decision")  # fmt: skip
    assert fix_sentence(row, "revenue", "over the next 14 days", "$") == (
        "Fix checkout error: ≈ $26,700 (95%: 24,400–29,600) over the next 14 days, 499 customers, mostly at decision"
    )
    assert fix_sentence(row, "conversions", "over the period").startswith("Fix checkout error: ≈ 26,700 conversions (95%")


def test_segments_highlight_only_differences_that_matter(journey_map: JourneyMap) -> None:
    rows = []
    rng = np.random.default_rng(0)
    for i in range(600):
        channel = ["app", "web", "email"][i % 3]
        cid = f"c{i:03d}"
        rows.append((cid, "2026-01-01T00:00:00", "ad_click", 0.0, channel))
        # app customers go on to consideration 80% of the time, the others 40%.
        if rng.random() < (0.8 if channel == "app" else 0.4):
            rows.append((cid, "2026-01-02T00:00:00", "product_view", 0.0, channel))
    data = journey_data(canonical(rows), journey_map, at="2026-01-03")
    inputs = ReportInputs(data=data, ranking=pd.DataFrame(), segment="channel", segments=customer_segments(data.paths, "channel"))
    table, diffs = segment_differences(inputs)
    assert set(table["segment"]) == {"app", "web", "email"}
    step = "awareness → consideration"
    flagged = {(d.segment, d.measure): d.difference for d in diffs.itertuples(index=False)}
    assert flagged[("app", step)] > 0.3 and flagged[("web", step)] < 0 and flagged[("email", step)] < 0
    assert not [m for (_, m) in flagged if m != step]  # nothing else differs
    # The same customers split at random into two segments: nothing is highlighted.
    inputs.segments = pd.Series(np.where(np.arange(data.paths.n) % 2, "odd", "even"), dtype=object)
    assert segment_differences(inputs)[1].empty


# ---------------------------------------------------------------------------- every journey shape
@pytest.fixture(scope="module")
def small_log() -> pd.DataFrame:
    from journey_ml.simulate import SimulationConfig, simulate

    return simulate(SimulationConfig(customers=250, days=60, seed=5), truth=False).events


def shape_ranking(jm: JourneyMap, unit: str, data: Any) -> pd.DataFrame:
    """A ranking frame for the shape's frictions (test input: amounts from occurrences)."""
    if not jm.friction:
        df = pd.DataFrame({c: pd.Series(dtype=object) for c in IMPROVEMENT_COLUMNS})
        df.attrs.update(unit=unit, message=f"{NO_FRICTIONS}: nothing to rank")
        return df
    fr = data.frictions
    amount = fr["customers"].to_numpy(dtype=float) * 3.0
    df = pd.DataFrame({
        "rank": np.arange(1, len(fr) + 1), "touchpoint": fr["friction"], "touchpoint_group": fr["touchpoint"],
        "expected_impact": amount, "unit": unit, "ci_low": amount * 0.8, "ci_high": amount * 1.2,
        "customers_affected": fr["customers"], "share_affected": 0.1, "rows_affected": fr["occurrences"],
        "mean_drop_off_points": 1.0, "worst_stage": fr["stage"], "worst_stage_share": 0.6, "counterfactual_impact": amount * 0.9,
        "shap_impact": amount, "uplift_impact": np.nan, "uplift_se": np.nan, "evidence": "impact",
    })  # fmt: skip
    df = df.sort_values("expected_impact", ascending=False, kind="stable").reset_index(drop=True)
    df["rank"] = np.arange(1, len(df) + 1)
    df.attrs.update(unit=unit, at="2026-03-01")
    return df[list(IMPROVEMENT_COLUMNS)]


@pytest.mark.parametrize("shape", SHAPES, ids=[s.name for s in SHAPES])
def test_page_renders_for_every_journey_shape(shape: Shape, small_log: pd.DataFrame) -> None:
    jm = JourneyMap.from_dict(shape_map(shape))
    events = validate_events(shape_events(shape, small_log), jm).events
    data = journey_data(events, jm)
    unit = {"revenue": "revenue", "conversions": "conversions"}.get(data.paths.value_unit, "drop_offs")
    ranking = shape_ranking(jm, unit, data)
    rng = np.random.default_rng(1)
    names = np.asarray(jm.stage_names, dtype=object)
    active = ~data.paths.gone
    scores = pd.DataFrame({"current_stage": names[data.paths.furthest[active]], "drop_off_risk": rng.random(int(active.sum()))})
    segment = "channel" if shape.channel else None
    data_inputs = ReportInputs(
        data=data, ranking=ranking, scores=scores, segment=segment,
        segments=customer_segments(data.paths, segment) if segment else None,
        history=[{"version": "1", "summary": data.summary()}, {"label": "this report", "summary": data.summary()}],
    )  # fmt: skip
    page = build_page(data_inputs)
    for sid in SECTION_IDS:
        assert page.count(f"id='{sid}'") == 1, sid
    text = visible_text(page)
    assert not re.search(r"\b(nan|NaN|None|inf)\b", text), re.findall(r".{40}\b(?:nan|NaN|None|inf)\b.{40}", text)[:3]
    figures = page.count("<figure class='chart'>")
    assert figures >= 3 and page.count("class='takeaway'") == figures  # a one-line takeaway under each chart
    assert page.count("<div class='print-only'><svg") == figures  # and its static image for print
    assert_self_contained(page)
    if not jm.friction:
        assert "No ranking:" in text and "declares no frictions" in text
    else:
        assert "Fix " in text and "counterfactual" in text.lower()
    if len(jm.stages) == 1:
        assert "one stage" in text and "go on to" not in text
    else:
        assert f"go on to {jm.stage_names[1]}" in text
    if not jm.exit_events:
        assert "no exit events" in text
    assert ("Revenue" in text) == (data.paths.value_unit == "revenue")


# ---------------------------------------------------------------------------- CLI and service
@pytest.fixture(scope="module")
def cli_page(trained_bundle: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """``journey-ml report`` on 500 customers of the trained bundle's log (run once)."""
    from journey_ml.cli import app

    tmp = tmp_path_factory.mktemp("report_cli")
    ev = trained_bundle.events
    keep = ev["customer_id"].drop_duplicates().iloc[:500]
    path = tmp / "events.parquet"
    ev[ev["customer_id"].isin(keep)].to_parquet(path)
    out = tmp / "report.html"
    args = ["report", str(path), "--model", str(trained_bundle.bundle_dir), "--out", str(out), "--segment", "channel",
            "--bootstrap", "20", "--currency", "$", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    bad = CliRunner().invoke(app, [*args[:6], "--segment", "platfrom"], catch_exceptions=False)
    return {"json": json.loads(result.stdout), "html": out.read_text(encoding="utf-8"), "path": out, "events": path, "bad": bad}


@pytest.mark.xdist_group("report_cli")  # with the browser test: one CLI run serves both
def test_report_cli_writes_the_self_contained_page(cli_page: dict[str, Any]) -> None:
    page = cli_page["html"]
    assert cli_page["json"]["sections"] == SECTION_IDS
    assert cli_page["json"]["summary"]["customers"] == 500
    for sid in SECTION_IDS:
        assert f"id='{sid}'" in page
    assert_self_contained(page)
    text = visible_text(page)
    assert re.search(r"Fix [a-z ]+: ≈ -?\$[\d,.]+ \(95%: ", text)  # plain-words fixes with their interval
    assert "agrees: inside the interval" in text or "differs: outside the interval" in text
    assert "Segments" in text and "channel" in text
    bad = cli_page["bad"]
    assert bad.exit_code == 2 and "--segment: column 'platfrom' is not in the events" in bad.output


def test_get_report_serves_the_bundles_page(trained_bundle: Any, tmp_path: Path, asgi_client: Any) -> None:
    bundle = shutil.copytree(trained_bundle.bundle_dir, tmp_path / "bundle")
    missing = asgi_client(bundle).get("/report")
    assert missing.status_code == 404 and missing.json()["field"] == "report"
    (bundle / "report.html").write_text("<!DOCTYPE html><html><body><section id='journey-map'></section></body></html>", encoding="utf-8")
    (bundle / "bundle.json").write_text((bundle / "bundle.json").read_text() + "\n")  # a new token: the page is read again
    served = asgi_client(bundle).get("/report")
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/html")
    assert "id='journey-map'" in served.text


# ---------------------------------------------------------------------------- in a browser
def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


class DevTools:
    """Headless Chromium driven over the DevTools protocol on a pipe (fds 3 and 4): one
    browser launch loads the page, evaluates a probe, collects script errors and takes a
    screenshot (no Playwright, no network port)."""

    def __init__(self, chromium: str, profile: Path) -> None:
        import os
        import subprocess

        self._to_r, self._to_w = os.pipe()
        self._from_r, self._from_w = os.pipe()
        # The child reads commands on fd 3 and writes replies on fd 4.
        def fds() -> None:
            os.dup2(self._to_r, 3)
            os.dup2(self._from_w, 4)

        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={profile}", "--remote-debugging-pipe", "about:blank"],
            preexec_fn=fds, pass_fds=(3, 4, self._to_r, self._from_w), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(self._to_r)
        os.close(self._from_w)
        self._buf = b""
        self._id = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def _read(self) -> dict[str, Any]:
        import os

        while b"\0" not in self._buf:
            chunk = os.read(self._from_r, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self._buf += chunk
        raw, self._buf = self._buf.split(b"\0", 1)
        return dict(json.loads(raw))

    def send(self, method: str, **params: Any) -> dict[str, Any]:
        import os

        self._id += 1
        msg: dict[str, Any] = {"id": self._id, "method": method, "params": params}
        if self.session and not method.startswith(("Target.", "Browser.")):
            msg["sessionId"] = self.session
        os.write(self._to_w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._id:
                assert "error" not in reply, reply
                return dict(reply.get("result", {}))
            self.events.append(reply)

    def wait_for(self, method: str) -> None:
        while not any(e.get("method") == method for e in self.events):
            self.events.append(self._read())

    def close(self) -> None:
        import contextlib
        import os

        with contextlib.suppress(RuntimeError, OSError, AssertionError):
            self.send("Browser.close")
        os.close(self._to_w)
        os.close(self._from_r)
        self.proc.wait(timeout=30)


# After load: which sections are visible, the page's width, rendered plots, and a sort by amount.
_PROBE = """(function () {
  var out = {sections: {}, scrollWidth: document.documentElement.scrollWidth, width: window.innerWidth,
             plots: document.querySelectorAll('.plotly-graph-div .main-svg').length, divs: document.querySelectorAll('.plotly-graph-div').length};
  IDS.forEach(function (id) {
    var el = document.getElementById(id), r = el && el.getBoundingClientRect(), st = el && getComputedStyle(el);
    out.sections[id] = !!el && r.height > 0 && r.width > 0 && st.display !== 'none' && st.visibility !== 'hidden';
  });
  var th = document.querySelector('#fixes table th:nth-child(3)');
  if (th) { th.click(); out.sorted = Array.prototype.map.call(document.querySelectorAll('#fixes tbody tr'), function (r) { return parseFloat(r.cells[2].dataset.v); }); }
  return out;
})()"""


@pytest.mark.e2e
@pytest.mark.xdist_group("report_cli")
def test_page_in_headless_chromium_has_no_script_errors_and_every_section_visible(cli_page: dict[str, Any], tmp_path: Path) -> None:
    """Loads the CLI's page in headless Chromium at 1280 px: no script error, every section
    visible, every chart drawn, no sideways scrolling, sortable fixes; then a screenshot
    (copied to docs/report.png when JOURNEY_ML_DOCS_SCREENSHOT=1, for the README)."""
    import base64
    import os

    chromium = _chromium()
    if chromium is None:
        pytest.skip("chromium not found (apt-get install -y chromium); cannot load the page")
    browser = DevTools(chromium, tmp_path / "profile")
    try:
        target = browser.send("Target.createTarget", url="about:blank")["targetId"]
        browser.session = browser.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            browser.send(domain)
        browser.send("Emulation.setDeviceMetricsOverride", width=1280, height=2200, deviceScaleFactor=1, mobile=False)
        browser.send("Page.navigate", url=cli_page["path"].as_uri())
        browser.wait_for("Page.loadEventFired")
        png = base64.b64decode(browser.send("Page.captureScreenshot", format="png")["data"])
        probe = browser.send("Runtime.evaluate", expression=_PROBE.replace("IDS", json.dumps(SECTION_IDS)), returnByValue=True)
        out = probe["result"]["value"]
    finally:
        browser.close()
    errors = [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]  # fmt: skip
    assert errors == []
    assert out["sections"] == {sid: True for sid in SECTION_IDS}
    assert out["divs"] >= 6 and out["plots"] >= out["divs"]  # every chart drawn
    assert out["scrollWidth"] <= out["width"] == 1280  # no sideways scrolling at 1280 px
    assert out["sorted"] == sorted(out["sorted"]) and len(out["sorted"]) >= 2
    shot = tmp_path / "report.png"
    shot.write_bytes(png)
    from matplotlib.image import imread

    pixels = imread(shot)
    assert pixels.shape[:2] == (2200, 1280) and float(pixels[..., :3].std()) > 0.05  # not a blank page
    if os.environ.get("JOURNEY_ML_DOCS_SCREENSHOT") == "1":
        shutil.copyfile(shot, Path(__file__).resolve().parents[1] / "docs" / "report.png")
