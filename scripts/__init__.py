"""Benchmarks and tools run from the repository (not installed); `scripts.live_server` is also
what the server tests start their servers with."""
