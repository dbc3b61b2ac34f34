"""Taskbell benchmarks: a load generator and an orchestrator. Not tests: they print figures."""
