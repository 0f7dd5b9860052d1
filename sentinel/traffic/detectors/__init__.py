"""Detectors: each folds decoded packet batches into bounded aggregates and reports them as observations."""
