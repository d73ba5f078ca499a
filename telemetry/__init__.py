"""Prometheus metrics: what they are (``metrics.py``) and what the stream records in them (``recorder.py``)."""
