"""Periodicity and trend rules on series built to be periodic, trending, or neither."""

import io
from datetime import date, timedelta

import numpy as np
import pytest
import statsmodels.api as sm
from PIL import Image

from crm_pipeline.features.series import write_customer_series
from crm_pipeline.patterns import report
from crm_pipeline.patterns.plots import PatternPlotter, figure_png, load_pattern_data
from crm_pipeline.patterns.report import INDEX, most_patterned, read_plot_files, write_pattern_plots
from crm_pipeline.patterns.rules import write_patterns
from crm_pipeline.warehouse.customer_tables import register_run_customers
from crm_pipeline.warehouse.keys import customer_file_name
from crm_pipeline.warehouse.store import Warehouse
from crm_pipeline_tests.helpers import seed_transactions

START, DAYS = date(2017, 1, 2), 3 * 365  # START is a Monday
KEYS = ["db1.WEEKLY", "db1.MONTHLY", "db1.GROWING", "db1.FLAT", "db1.SHRINKING", "db1.NOISE"]


def series() -> list[tuple]:
    rng, noise = np.random.default_rng(3), np.random.default_rng(11)
    rows = []
    for i in range(DAYS):
        day = START + timedelta(days=i)
        month_index = (day.year - START.year) * 12 + day.month - 1
        if day.weekday() == 0:  # three counterparts paid every Monday
            rows += [("db1", "WEEKLY", day, 100, f"W{k}", "out") for k in range(3)]
        if day.day == 15:  # three counterparts paid on the 15th
            rows += [("db1", "MONTHLY", day, 100, f"M{k}", "out") for k in range(3)]
        if rng.random() < 0.5 and day.weekday() != 0 and day.day != 15:  # noise: one counterpart
            for cust in ("WEEKLY", "MONTHLY"):
                rows.append(("db1", cust, day, 20, f"N{rng.integers(50)}", "out"))
        if day.day in (3, 17):  # a steadily growing customer, a flat one and a shrinking one
            rows.append(("db1", "GROWING", day, round(1000 * (1 + 0.04 * month_index), 2), "G", "in"))
            rows.append(("db1", "FLAT", day, round(1000 + rng.normal(0, 100), 2), "F", "in"))
            rows.append(("db1", "SHRINKING", day, round(3000 * (1 - 0.02 * month_index), 2), "S", "in"))
        for direction in ("in", "out"):  # neither: 1 + Poisson(1) random counterparts a day
            for k in noise.choice(30, size=1 + noise.poisson(1), replace=False):
                rows.append(("db1", "NOISE", day, 100, f"R{k}", direction))
    return rows


@pytest.fixture(scope="module")
def wh(tmp_path_factory) -> Warehouse:
    wh = Warehouse(tmp_path_factory.mktemp("patterns") / "w.duckdb")
    seed_transactions(wh, series())
    with wh.connect() as con:
        write_customer_series(con, KEYS, START + timedelta(days=DAYS - 1))
        write_patterns(con, KEYS)
    return wh


def cyclic(wh, key: str, measure: str = "counterparts_out") -> set[tuple[str, int]]:
    with wh.connect(read_only=True) as con:
        return set(
            con.execute(
                "SELECT kind, value FROM pattern_periodicity WHERE partition_key = ? "
                "AND measure = ? AND cyclic",
                [key, measure],
            ).fetchall()
        )


def test_weekly_and_monthly_payments_are_periodic_and_noise_is_not(wh):
    assert cyclic(wh, "db1.WEEKLY") == {("weekday", 1)}
    assert cyclic(wh, "db1.MONTHLY") == {("day_of_month", 15)}
    # paying on the 3rd and the 17th is periodic too; the outgoing side has no counterpart
    for key in ("db1.GROWING", "db1.FLAT", "db1.SHRINKING"):
        assert cyclic(wh, key, "counterparts_in") == {("day_of_month", 3), ("day_of_month", 17)}
        assert cyclic(wh, key) == set()
    assert cyclic(wh, "db1.NOISE", "counterparts_in") == cyclic(wh, "db1.NOISE") == set()


def trend(wh, key: str) -> tuple:
    with wh.connect(read_only=True) as con:
        return con.execute(
            "SELECT slope, p_value, direction, relative_slope FROM pattern_monthly_trend "
            "WHERE partition_key = ? AND measure = 'amount_in'",
            [key],
        ).fetchall()[0]


def monthly_totals(wh, key: str) -> np.ndarray:
    with wh.connect(read_only=True) as con:
        return np.array(
            [
                v
                for (v,) in con.execute(
                    "SELECT amount_in::DOUBLE FROM customer_series WHERE partition_key = ? "
                    "AND grain = 'month' AND period_start BETWEEN '2017-02-01' AND '2019-12-01' "
                    "ORDER BY period_start",
                    [key],
                ).fetchall()
            ]
        )


@pytest.mark.parametrize("key", ["db1.GROWING", "db1.FLAT"])
def test_monthly_trend_matches_statsmodels(wh, key):
    y = monthly_totals(wh, key)
    fit = sm.OLS(y, sm.add_constant(np.arange(len(y), dtype=float))).fit()
    slope, p_value, _, _ = trend(wh, key)
    assert slope == pytest.approx(fit.params[1], rel=1e-9)
    assert p_value == pytest.approx(fit.pvalues[1], rel=1e-6, abs=1e-12)


def test_growing_customer_trends_up_shrinking_down_flat_and_noise_neither(wh):
    slope, p, direction, relative = trend(wh, "db1.GROWING")
    assert (
        direction == "up" and p <= 0.05 and slope > 50
    )  # about +80 a month (2 x 40), less the partial last month
    assert relative > 0
    slope, p, direction, relative = trend(wh, "db1.SHRINKING")
    assert direction == "down" and p <= 0.05 and slope == pytest.approx(-120, rel=0.05) and relative < 0
    assert trend(wh, "db1.FLAT")[2] == "flat"
    assert trend(wh, "db1.NOISE")[1] > 0.05 and trend(wh, "db1.NOISE")[2] == "flat"


def test_quarter_over_quarter_flags_big_yearly_changes(wh):
    with wh.connect(read_only=True) as con:
        rows = dict(
            con.execute(
                "SELECT partition_key, bool_or(flagged) FROM pattern_quarter_trend "
                "WHERE measure = 'amount_in' GROUP BY 1"
            ).fetchall()
        )
        first_delta = con.execute(
            "SELECT delta FROM pattern_quarter_trend WHERE partition_key = 'db1.GROWING' "
            "AND measure = 'amount_in' ORDER BY quarter_start LIMIT 1"
        ).fetchall()[0][0]
    # Q1 2017 is incomplete (the series starts on 2 January), so the first comparison is
    # Q2 2018 against Q2 2017: levels 1 + 0.04 x month index, (1.64 - 1.16) / 1.16
    assert first_delta == pytest.approx(0.48 / 1.16, rel=1e-9)
    assert rows == {
        "db1.GROWING": True, "db1.FLAT": False, "db1.WEEKLY": False, "db1.MONTHLY": False,
        "db1.SHRINKING": True, "db1.NOISE": False,
    }  # fmt: skip


def test_the_plotted_trend_line_covers_the_months_it_was_fitted_to(wh):
    """The series runs from 2 January 2017 to 1 January 2020: both Januaries are partial, so the
    regression (and its line in the plot) starts in February 2017, at t = 0, and ends in December."""
    with wh.connect(read_only=True) as con:
        [growing] = load_pattern_data(con, ["db1.GROWING"])
        fitted = con.execute(
            "SELECT months FROM pattern_monthly_trend "
            "WHERE partition_key = 'db1.GROWING' AND measure = 'amount_in'"
        ).fetchall()[0][0]
    with PatternPlotter() as plotter:
        png = plotter.render(growing)
    months = growing.months
    assert months["complete"].tolist() == [False] + [True] * 35 + [False]
    assert months["complete"].sum() == fitted and png[:4] == b"\x89PNG"


def test_a_reused_plotter_draws_each_customer_as_a_fresh_one_would(wh):
    """The plotter keeps its figure between customers: nothing of the one before may remain
    (a longer series, a trend line, a cyclic bar)."""
    with wh.connect(read_only=True) as con:
        flat, growing, weekly, nobody = load_pattern_data(
            con, ["db1.FLAT", "db1.GROWING", "db1.WEEKLY", "db1.X"]
        )
    with PatternPlotter() as fresh:
        alone = fresh.render(flat)
    with PatternPlotter() as fresh:
        empty = fresh.render(nobody)
    with PatternPlotter() as reused:
        reused.render(growing)
        reused.render(weekly)
        assert reused.render(nobody) == empty  # no series at all: empty panels, not the last axes
        after_others = reused.render(flat)
    assert after_others == alone


def test_the_fast_drawing_gives_the_pixels_of_a_full_redraw(wh):
    """Each customer is drawn over a cached background (blitting): a full redraw of the same
    figure, every artist drawn by savefig, gives the same image."""
    with wh.connect(read_only=True) as con:
        [weekly] = load_pattern_data(con, ["db1.WEEKLY"])
    assert any(cyclic for _, cyclic in weekly.periodicity.values())  # a blue bar to get right
    with PatternPlotter() as plotter:
        fast = plotter.render(weekly)
        for artist in (plotter.top, *plotter.foreground):
            artist.set_animated(False)
        full = figure_png(plotter.fig, close=False)
    as_array = lambda png: np.asarray(Image.open(io.BytesIO(png)).convert("RGBA"))  # noqa: E731
    assert as_array(fast).shape == (440, 640, 4)
    np.testing.assert_array_equal(as_array(fast), as_array(full))


def test_plot_files_for_every_customer_and_an_index_of_their_patterns(wh, tmp_path, monkeypatch):
    """Two worker processes, two customers a task; the files are what one plotter here draws."""
    monkeypatch.setattr(report, "PLOTS_PER_TASK", 2)
    progress = []
    with wh.connect(read_only=True) as con:
        run = read_plot_files(con, [*KEYS, "db1.NOBODY"])  # a key without a series gets no file
        later = read_plot_files(con, ["db1.FLAT"])
    files = write_pattern_plots(run, tmp_path, n_jobs=2, progress=lambda *a: progress.append(a))
    write_pattern_plots(later, tmp_path, n_jobs=1)  # one customer later: the others stay
    data = run.data[: len(KEYS)]
    with PatternPlotter() as plotter:
        assert all(files[d.partition_key].read_bytes() == plotter.render(d) for d in data)
    assert progress == [(2, 6), (4, 6), (6, 6)]
    expected = [INDEX, *(customer_file_name(k, ".png") for k in KEYS)]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(expected)  # no temporary file left
    rows = {
        row.split("</a>")[0].split(">")[-1]: row for row in (tmp_path / INDEX).read_text().split("<tr>")[2:]
    }
    assert sorted(rows) == sorted(KEYS)
    assert "out Mon" in rows["db1.WEEKLY"] and "out day 15" in rows["db1.MONTHLY"]
    assert "amount_in up" in rows["db1.GROWING"] and "amount_in down" in rows["db1.SHRINKING"]
    assert "<td></td><td></td>" in rows["db1.NOISE"]  # neither cyclic nor trending


def test_the_metadata_plots_show_the_most_patterned_customers_first(wh):
    """GROWING and SHRINKING have a monthly trend and cyclic days (they pay on the 3rd and 17th),
    NOISE has neither: it comes last, and a run's few inline plots are spent on the others."""
    with wh.connect() as con:
        register_run_customers(con, KEYS)
        order = most_patterned(con, len(KEYS))
        assert most_patterned(con, 2) == order[:2]
    assert sorted(order) == sorted(KEYS) and order[-1] == "db1.NOISE"
    assert set(order[:2]) == {"db1.GROWING", "db1.SHRINKING"}
