"""Reporting: statistics, comparison tables, figures, templates and nightly history. Never imports TensorFlow."""
