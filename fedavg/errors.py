"""The one root exception of fedavg.

FedAvgError
 +-- PartitionError      a partition cannot be built from the given settings
 +-- AggregationError    the updates to average are empty or disagree in shape
 +-- ClientError         one client's update could not be computed
 +-- CheckpointError     a checkpoint is missing, corrupt or from another run
"""


class FedAvgError(Exception):
    """Base of every error raised by fedavg."""


class PartitionError(FedAvgError):
    pass


class AggregationError(FedAvgError):
    pass


class ClientError(FedAvgError):
    pass


class CheckpointError(FedAvgError):
    pass
