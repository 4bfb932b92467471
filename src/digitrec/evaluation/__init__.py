"""Scoring a trained model on the prepared test and val splits, into metrics and figures."""
