"""Benchmarks: speed and memory, measured against a real Temporal dev server (never asserted in tests)."""
