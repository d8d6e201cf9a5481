"""Benchmarks for liveblog's fan-out (issue 4). Entry point: ``python -m bench run``."""
