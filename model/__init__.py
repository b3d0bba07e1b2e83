"""Streaming data, networks, sparse ops, training and metrics."""
