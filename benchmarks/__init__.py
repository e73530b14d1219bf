"""Benchmarks of the project's components, run as modules (`python -m benchmarks.<name>`)."""
