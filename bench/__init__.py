"""Benchmarks for hubbot: speed at scale, and work avoided on a replayed history."""
