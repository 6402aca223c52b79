"""Evaluation: prediction over images of any size, and metrics."""
