"""Where `stop_process` was: kept only for deployer/bench/infer.py until the benchmarks import `procs`."""

from procs import stop_process

__all__ = ["stop_process"]
