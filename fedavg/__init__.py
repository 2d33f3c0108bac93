"""FedAvg (McMahan et al. 2017, Algorithm 1) on MNIST: algorithm, partitions, executors, round loop.

Kept import-light on purpose: the `fedavg/client` action bundles this package and
imports only `fedavg.core` and `fedavg.models`.
"""

from .errors import FedAvgError

__all__ = ["FedAvgError"]
