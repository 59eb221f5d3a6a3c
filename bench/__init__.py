"""fastbp benchmark suite: pytest-benchmark tests and ``python -m bench.report``.

Nothing in ``tests/`` imports from here; this package only measures.
"""
