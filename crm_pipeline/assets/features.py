"""Feature assets: customer series and the lag dataset, partitioned by customer."""

from pathlib import Path

from dagster import (
    AssetCheckSeverity,
    AssetExecutionContext,
    Config,
    Failure,
    MaterializeResult,
    MetadataValue,
)
from pydantic import Field

from crm_pipeline.assets.customers import customer_asset, every_partition_of, log_progress
from crm_pipeline.assets.extraction import raw_assets
from crm_pipeline.assets.metadata import inline_plots, preview_markdown, report_folder, zero_check
from crm_pipeline.features.checks import (
    calendar_gaps,
    duplicate_lag_days,
    duplicate_periods,
    null_lags_after_warmup,
)
from crm_pipeline.features.encoding import UNSEEN_CODE, learn_encodings, write_crm_events
from crm_pipeline.features.series import (
    MIN_MONTHLY_TRANSACTIONS,
    future_transactions,
    series_horizon,
    write_customer_series,
    write_lag_features,
)
from crm_pipeline.partitions import partition_label
from crm_pipeline.patterns.plots import PatternData, PatternPlotter, load_pattern_data, png_markdown
from crm_pipeline.patterns.report import INDEX, most_patterned, read_plot_files, write_pattern_plots
from crm_pipeline.patterns.rules import PatternRules, write_patterns
from crm_pipeline.resources import WarehouseResource
from crm_pipeline.warehouse.customer_tables import RUN_ROWS
from crm_pipeline.warehouse.store import scalar

FEATURES_GROUP = "features"
RAW = {a.key.path[-1]: a for a in raw_assets}
RAW_TRANSACTIONS = RAW["raw_transactions"]
CRM_RAW = [RAW[f"raw_{e}"] for e in ("opportunities", "quotations", "orders")]


class SeriesConfig(Config):
    """Launchpad settings of the customer series."""

    min_monthly_transactions: float = Field(
        MIN_MONTHLY_TRANSACTIONS,
        description="Customers with fewer transactions per month on average are marked "
        "sufficient_history = false (the Soro et al. paper used 100).",
    )


@customer_asset(
    "customer_series, customer_history",
    FEATURES_GROUP,
    every_partition_of([RAW_TRANSACTIONS]),
    checks=["no_duplicate_periods", "calendar_complete"],
)
def customer_series(
    context: AssetExecutionContext, config: SeriesConfig, warehouse: WarehouseResource
) -> MaterializeResult:
    """Daily, weekly, monthly and quarterly amount and distinct counterparts, in and out apart,
    on a complete calendar up to the newest transaction (never a future date)."""
    keys = list(context.partition_keys)
    context.log.info("customer_series for %s", partition_label(keys))
    with warehouse.open(context.log).connect() as con:
        horizon = series_horizon(con)
        if horizon is None:
            raise Failure(
                "raw.transactions holds no transaction dated today or earlier: "
                "materialize raw_transactions first"
            )
        future = future_transactions(con, horizon)
        if future:
            context.log.warning("%d transactions dated after %s are left out of the series", future, horizon)
        written = write_customer_series(
            con,
            keys,
            horizon,
            config.min_monthly_transactions,
            progress=log_progress(context, "customer_series"),
        )
        without = scalar(
            con, "SELECT count(*) FROM run_customers ANTI JOIN customer_series USING (partition_key)"
        )
        short = scalar(
            con,
            "SELECT count(*) " + RUN_ROWS.format(table="customer_history") + " WHERE NOT sufficient_history",
        )
        duplicates = duplicate_periods(con)
        gaps = calendar_gaps(con, horizon)
        preview = preview_markdown(
            con,
            "SELECT * " + RUN_ROWS.format(table="customer_series") + " WHERE grain = 'month' ORDER BY 1, 3",
            [],
        )
    return MaterializeResult(
        metadata={
            "dagster/row_count": written,
            "customers": len(keys),
            "customers_without_transactions": without,
            "customers_with_short_history": short,
            "horizon": horizon.isoformat(),
            "future_transactions_left_out": future,
            "preview": preview,
        },
        check_results=[
            zero_check("no_duplicate_periods", duplicates, "duplicates"),
            zero_check("calendar_complete", gaps, "customers_with_gaps"),
        ],
    )


@customer_asset(
    "lag_features",
    FEATURES_GROUP,
    [customer_series],
    checks=["no_duplicate_days", "no_null_lags_after_warmup"],
)
def lag_features(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    """The lag dataset (Soro et al., Table 1): per customer, measure and day, lags 1-6, weekly,
    monthly and quarterly averages, weekday flags, previous weeks and months, neighbourhoods."""
    keys = list(context.partition_keys)
    context.log.info("lag_features for %s", partition_label(keys))
    with warehouse.open(context.log).connect() as con:
        written = write_lag_features(con, keys, progress=log_progress(context, "lag_features"))
        duplicates = duplicate_lag_days(con)
        null_lags = null_lags_after_warmup(con)
        preview = preview_markdown(
            con,
            "SELECT * " + RUN_ROWS.format(table="lag_features") + " WHERE NOT is_warmup ORDER BY 1, 2, 3",
            [],
        )
    return MaterializeResult(
        metadata={"dagster/row_count": written, "customers": len(keys), "preview": preview},
        check_results=[
            zero_check("no_duplicate_days", duplicates, "duplicates"),
            zero_check("no_null_lags_after_warmup", null_lags, "null_lag_rows"),
        ],
    )


@customer_asset(
    "crm_events, crm_encodings",
    FEATURES_GROUP,
    every_partition_of(CRM_RAW),
    checks=["buy_interest_labels_known"],
)
def crm_events(context: AssetExecutionContext, warehouse: WarehouseResource) -> MaterializeResult:
    """Opportunities -> quotations -> orders per customer with the CRM paper's encoded columns.

    Categorical codes are learned first (append-only in ``crm_encodings``), so a new month
    never renumbers old codes; buy interest is ordinal, subtotals are converted to EUR."""
    keys = list(context.partition_keys)
    context.log.info("crm_events for %s", partition_label(keys))
    with warehouse.open(context.log).connect() as con:
        learned = learn_encodings(con, context.run.run_id)
        written = write_crm_events(con, keys)
        run_events = RUN_ROWS.format(table="crm_events")
        unknown_interest = scalar(
            con,
            f"SELECT count(*) {run_events} WHERE opportunity_buy_interest = {UNSEEN_CODE} "
            f"OR quotation_buy_interest = {UNSEEN_CODE}",
        )
        no_rate = scalar(
            con,
            f"SELECT count(*) {run_events} "
            "WHERE quotation_subtotal IS NOT NULL AND quotation_subtotal_eur IS NULL",
        )
        at_demo, demo_currencies = con.execute(
            "SELECT count(*), string_agg(DISTINCT trading_currency, ', ' ORDER BY trading_currency) "
            f"{run_events} WHERE quotation_subtotal IS NOT NULL "
            "AND trading_currency IN (SELECT currency FROM fx_rates_in_use WHERE demo)"
        ).fetchone()
        codes = preview_markdown(
            con, "SELECT column_name, category, code FROM crm_encodings ORDER BY 1, 3", []
        )
        preview = preview_markdown(con, f"SELECT * {run_events} ORDER BY 1, process_date", [])
    if no_rate:
        context.log.warning(
            "%d quotations have no fx_rates row for their currency valid on their date: no EUR subtotal",
            no_rate,
        )
    if at_demo:
        context.log.warning(
            "%d quotations were converted at the round demo rates of fx_demo_rates (%s): "
            "load those currencies' rates into fx_rates",
            at_demo,
            demo_currencies,
        )
    return MaterializeResult(
        metadata={
            "dagster/row_count": written,
            "customers": len(keys),
            "new_codes": learned,
            "subtotals_without_fx_rate": no_rate,
            "subtotals_at_demo_rates": at_demo,
            "encodings": codes,
            "preview": preview,
        },
        check_results=[
            zero_check(
                "buy_interest_labels_known",
                unknown_interest,
                "events_with_unknown_label",
                AssetCheckSeverity.WARN,
            )
        ],
    )


class PatternConfig(Config):
    """Launchpad settings of the pattern rules (defaults: the Soro et al. paper)."""

    tau_share: float = Field(0.8, description="tau = this share of the year's maximum of daily counterparts")
    min_month_ratio: float = Field(0.85, description="cyclic when tau is exceeded in this share of months")
    quarter_delta: float = Field(0.30, description="flag a quarter-over-quarter change at least this large")
    max_p_value: float = Field(0.05, description="a monthly OLS slope is a trend at this p-value or below")
    plots: int = Field(
        6,
        ge=0,
        description="how many customers of the run get a plot in the metadata (the most patterned first)",
    )
    plot_files: bool = Field(
        True,
        description="write every run customer's plot to reports/patterns/ beside the warehouse, "
        "with an index page (about 0.15 s a customer; a bulk run's metadata cannot hold them all)",
    )
    workers: int = Field(-1, description="processes that draw the plot files (-1: one per core)")


@customer_asset(
    "pattern_periodicity, pattern_quarter_trend, pattern_monthly_trend", FEATURES_GROUP, [customer_series]
)
def regular_patterns(
    context: AssetExecutionContext, config: PatternConfig, warehouse: WarehouseResource
) -> MaterializeResult:
    """Periodicity (cyclic weekdays and days of month) and trend (quarter over quarter, monthly
    OLS slope) per customer, stored with their evidence; plots inline for the customers with the
    most patterns, and every customer's as a file."""
    keys = list(context.partition_keys)
    context.log.info("regular_patterns for %s", partition_label(keys))
    rules = PatternRules(config.tau_share, config.min_month_ratio, config.quarter_delta, config.max_p_value)
    if config.workers == 0:
        raise Failure("regular_patterns: workers must be -1 (one per core) or a number of processes, not 0")
    wh = warehouse.open(context.log)
    folder = report_folder(wh.path, "patterns")
    with wh.connect() as con:
        written = write_patterns(con, keys, rules)
        to_draw = read_plot_files(con, keys) if config.plot_files else None
        inline_data = load_pattern_data(con, most_patterned(con, config.plots))
        run_cyclic = RUN_ROWS.format(table="pattern_periodicity")
        cyclic = scalar(con, f"SELECT count(DISTINCT partition_key) {run_cyclic} WHERE cyclic")
        directions = dict(
            con.execute(
                "SELECT direction, count(*) " + RUN_ROWS.format(table="pattern_monthly_trend") + " GROUP BY 1"
            ).fetchall()
        )
        preview = preview_markdown(
            con, "SELECT * " + RUN_ROWS.format(table="pattern_monthly_trend") + " ORDER BY p_value", []
        )
    files: dict[str, Path] = {}
    if to_draw is not None:  # with the warehouse closed: drawing thousands of customers takes minutes
        progress = log_progress(context, "pattern plots")
        files = write_pattern_plots(to_draw, folder, config.min_month_ratio, config.workers, progress)
    plots = inline_plots(
        keys,
        lambda: inline_pattern_plots(inline_data, files, config.min_month_ratio),
        "every customer's plot is a file: see plot_files" if files else "turn plot_files on for files",
    )
    return MaterializeResult(
        metadata={
            **{f"rows_{table}": rows for table, rows in written.items()},
            "customers": len(keys),
            "customers_with_cyclic_days": cyclic,
            "trends_up": directions.get("up", 0),
            "trends_down": directions.get("down", 0),
            "preview": preview,
            "plots": plots,
            **({"plot_files": MetadataValue.path(str(folder / INDEX))} if files else {}),
        }
    )


def inline_pattern_plots(data: list[PatternData], files: dict[str, Path], min_month_ratio: float) -> str:
    """The customers' pattern plots as markdown: read from their files when the run wrote them,
    drawn otherwise."""
    drawn: dict[str, bytes] = {}
    missing = [d for d in data if d.partition_key not in files]
    if missing:
        with PatternPlotter(min_month_ratio) as plotter:
            drawn = {d.partition_key: plotter.render(d) for d in missing}
    pngs = [(key, drawn.get(key) or files[key].read_bytes()) for key in (d.partition_key for d in data)]
    return "\n\n".join(png_markdown(png, key) for key, png in pngs) or "_no customer_"
