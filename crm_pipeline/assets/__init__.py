"""Thin Dagster assets, one module per stage."""

import warnings

from dagster import BetaWarning, PreviewWarning

# Single-run backfill policies and pools are beta in Dagster 1.13; we rely on them on purpose.
warnings.filterwarnings("ignore", category=BetaWarning)
warnings.filterwarnings("ignore", category=PreviewWarning)
