"""Streaming data, networks, sparse ops, training and metrics (to come: see the open issues)."""
