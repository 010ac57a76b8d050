"""The evaluation protocol of Soro et al.: anomalies injected into held-out days, one at a time."""
