"""Benchmarks (not installed with lightlens): run from the repository root as ``python -m benchmarks``."""
