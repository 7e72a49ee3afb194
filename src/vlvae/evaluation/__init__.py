"""Evaluation: classifiers, correctness, likelihood bounds, the report and its figures."""
