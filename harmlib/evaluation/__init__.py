"""Metrics and evaluations of harmonized images (tables and figures build on these)."""
