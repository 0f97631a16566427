"""Evaluation: restore a run's final checkpoint and score it on the test set."""
