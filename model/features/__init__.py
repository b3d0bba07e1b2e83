"""Precomputed features for the two-phase baselines: extractors, the table layout, the CSD importer."""
