"""Benchmark driver pieces for bench/run.py."""
