"""Benchmarks: bounded, loopback-only scenarios run by `make bench` (not by `make test`)."""
