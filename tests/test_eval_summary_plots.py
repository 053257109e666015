"""Summary numbers against hand computation, and figures that carry the data."""

from __future__ import annotations

import json
import math

import pandas as pd
import plotly.graph_objects as go
import pytest
from scipy import stats  # pinned in requirements.txt: the reference for Wilson and McNemar

from powersmc_core.evaluation.plots import (
    accuracy_latency_figure,
    save_figure,
    save_report_figures,
    sweep_figure,
)
from powersmc_core.evaluation.runner import frame
from powersmc_core.evaluation.summary import (
    format_pairs,
    format_table,
    mcnemar_exact,
    paired_comparisons,
    summary_table,
    wilson_interval,
)


def test_wilson_interval_by_hand():
    # 8/10, z = 1.96: centre = (0.8 + 0.19208)/1.38415 = 0.71674,
    # half = 1.95996·sqrt(0.016 + 0.0096039)/1.38415 = 0.22658 -> [0.4902, 0.9433].
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4)
    assert high == pytest.approx(0.9433, abs=1e-4)
    # 0/10: lower bound 0, upper z²/(n + z²) = 3.84146/13.84146 = 0.27753.
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


@pytest.mark.parametrize("k,n", [(0, 1), (0, 10), (3, 10), (8, 10), (10, 10), (17, 50), (1, 200)])
def test_wilson_interval_agrees_with_scipy(k, n):
    ci = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_exact_mcnemar_agrees_with_scipys_binomial_test():
    for b in range(0, 13):
        for c in range(0, 13):
            expected = 1.0 if b + c == 0 else stats.binomtest(b, b + c, 0.5).pvalue
            assert mcnemar_exact(b, c) == pytest.approx(expected, rel=1e-12), (b, c)
    # By hand: b = 0, c = 5 -> 2 / 2^5; b = 1, c = 4 -> 2·(1 + 5) / 2^5.
    assert mcnemar_exact(0, 5) == 2 / 32 and mcnemar_exact(1, 4) == 12 / 32
    with pytest.raises(ValueError):
        mcnemar_exact(-1, 2)


def _rows() -> pd.DataFrame:
    """Hand-made rows: base (2/4 right, 1 s), smc at alpha 2 and 4 (N=8), bon."""
    rows = []

    def add(method, config, correct, latency, log_p, tokens=10, alpha=math.nan, particles=-1):
        for i, (ok, lat) in enumerate(zip(correct, latency, strict=True)):
            rows.append(
                {
                    "problem_id": f"p{i}",
                    "method": method,
                    "config_hash": method + json.dumps(config, sort_keys=True),
                    "config": json.dumps(config, sort_keys=True),
                    "correct": ok,
                    "latency_s": lat,
                    "log_p": log_p,
                    "tokens": tokens,
                    "log_p_per_token": log_p / tokens,
                    "alpha": alpha,
                    "particles": particles,
                }
            )

    add("base", {"seed": 0}, [1, 0, 1, 0], [1.0, 1.0, 2.0, 0.0], -20.0)
    add("smc", {"alpha": 2.0, "particles": 8}, [1, 1, 1, 0], [4, 4, 4, 4], -10.0, 10, 2.0, 8)
    add("smc", {"alpha": 4.0, "particles": 8}, [1, 1, 1, 1], [6, 6, 6, 6], -5.0, 10, 4.0, 8)
    add("bon", {"particles": 8}, [0, 1, 1, 0], [8, 8, 8, 8], -8.0, 10, math.nan, 8)
    return frame(rows)


def test_summary_table_by_hand():
    summary = summary_table(_rows()).set_index("config")
    assert list(summary.index) == ["base", "smc α=2 N=8", "smc α=4 N=8", "bon N=8"]
    base, smc2 = summary.loc["base"], summary.loc["smc α=2 N=8"]
    assert base["n"] == 4 and base["accuracy"] == 0.5
    # The table rounds the interval to 4 decimals (CI_DIGITS).
    assert (base["ci_low"], base["ci_high"]) == pytest.approx(wilson_interval(2, 4), abs=5e-5)
    assert smc2["accuracy"] == 0.75 and smc2["logp_per_token"] == pytest.approx(-1.0)
    # base's mean latency is (1 + 1 + 2 + 0)/4 = 1 s, so ratios are the means themselves.
    assert base["latency_ratio"] == pytest.approx(1.0)
    assert smc2["latency_ratio"] == pytest.approx(4.0)
    assert summary.loc["bon N=8", "latency_ratio"] == pytest.approx(8.0)
    text = format_table(summary.reset_index())
    assert "| smc α=4 N=8 | 4 | 1.00 [0.51, 1.00] | -0.500 |" in text


def test_summary_without_base_has_no_ratio():
    rows = _rows()
    summary = summary_table(rows[rows["method"] != "base"])
    assert summary["latency_ratio"].isna().all()
    assert summary_table(rows.iloc[:0]).empty


def test_accuracy_latency_figure_carries_every_point():
    summary = summary_table(_rows())
    fig = accuracy_latency_figure(summary)
    assert isinstance(fig, go.Figure)
    points = {(t.name, x, y) for t in fig.data for x, y in zip(t.x, t.y, strict=True)}
    assert ("smc", 6.0, 1.0) in points and ("base", 1.0, 0.5) in points
    assert len(points) == 4
    assert fig.layout.xaxis.type == "log"


def test_sweep_figure_lines_and_reference_lines():
    fig = sweep_figure(_rows(), "alpha", "accuracy")
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["smc"].x) == [2.0, 4.0] and list(by_name["smc"].y) == [0.75, 1.0]
    # base and bon do not read alpha: flat reference lines across the swept range.
    assert list(by_name["base (no alpha)"].y) == [0.5, 0.5]
    assert list(by_name["base (no alpha)"].x) == [2.0, 4.0]
    logp = sweep_figure(_rows(), "alpha", "logp_per_token")
    assert list({t.name: t for t in logp.data}["smc"].y) == [-1.0, -0.5]
    with pytest.raises(ValueError, match="param"):
        sweep_figure(_rows(), "temperature")


def test_save_figure_writes_html_and_png_or_says_why_not(tmp_path, monkeypatch):
    fig = accuracy_latency_figure(summary_table(_rows()))

    def no_browser(*args, **kwargs):
        raise RuntimeError("Kaleido requires Google Chrome to be installed")

    monkeypatch.setattr(go.Figure, "write_image", no_browser)
    saved = save_figure(fig, tmp_path / "acc")
    assert saved.html.exists() and saved.html.stat().st_size > 1000
    assert saved.png is None and "Chromium" in saved.png_skipped
    report = save_report_figures(_rows(), tmp_path / "report")
    names = sorted(s.html.name for s in report)
    # alpha has two values (a sweep); particles only one, so no N plots.
    assert names == [
        "accuracy_vs_alpha.html",
        "accuracy_vs_latency.html",
        "logp_per_token_vs_alpha.html",
    ]


def test_paired_comparisons_by_hand():
    pairs = paired_comparisons(_rows()).set_index(["first", "second"])
    # base [1,0,1,0] vs smc α=4 [1,1,1,1]: only smc right on p1, p3 -> b=0, c=2, p = 2/4.
    pair = pairs.loc[("base", "smc α=4 N=8")]
    assert (pair["n"], pair["first_only"], pair["second_only"]) == (4, 0, 2)
    assert pair["p_value"] == pytest.approx(0.5)
    # smc α=2 [1,1,1,0] vs bon [0,1,1,0]: b=1, c=0 -> p = 1.
    pair = pairs.loc[("smc α=2 N=8", "bon N=8")]
    assert (pair["first_only"], pair["second_only"], pair["p_value"]) == (1, 0, 1.0)
    assert len(pairs) == 4 * 3 // 2
    assert "| base | smc α=4 N=8 | 4 | 0 | 2 | 0.5 |" in format_pairs(pairs.reset_index())


def test_rule_lines_use_their_own_grades():
    rows = _rows()
    rows["correct_weighted"] = rows["method"].eq("smc")  # every smc vote right
    rows["correct_majority"] = rows["method"].eq("bon")  # every bon majority right
    rows = frame(rows)
    summary = summary_table(rows, ["chosen", "weighted-vote", "majority-vote"])
    lines = summary.set_index("config")["accuracy"].to_dict()
    assert lines["smc α=4 N=8 · weighted-vote"] == 1.0
    assert lines["smc α=2 N=8 · majority-vote"] == 0.0
    assert lines["majority N=8"] == 1.0 and lines["bon N=8"] == 0.5
    assert "base · weighted-vote" not in lines  # one-sequence methods: one line
    assert list(summary["rule"]).count("chosen") == 4
    # The default offers every rule (the Compare page's task-set table calls it so).
    assert summary_table(rows).equals(summary)


def test_summary_interval_is_exact_at_zero_and_one_and_rounded():
    # 0/4 right: the lower bound is exactly 0, not the float residue 5.6e-17; 4/4: exactly 1.
    assert wilson_interval(0, 3)[0] == 0.0 and wilson_interval(3, 3)[1] == 1.0
    rows = _rows()
    rows["correct"] = rows["method"].eq("smc")
    summary = summary_table(frame(rows)).set_index("config")
    assert summary.loc["base", "ci_low"] == 0.0 and summary.loc["smc α=4 N=8", "ci_high"] == 1.0
    for value in [*summary["ci_low"], *summary["ci_high"]]:
        assert value == round(value, 4)  # four decimals, no 0.00000000000000005
