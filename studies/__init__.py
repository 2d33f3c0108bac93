"""Studies and benchmarks: the FedAvg paper's tables, sweeps, comparisons and the `bench` measurements.

They measure the libraries (fedavg, mlcore, localwhisk, embedded_s3, hostnet) and never the
other way round: nothing in a library imports this package, and this package imports nothing
of the CLI (`deployer`), which hands it what it needs (executor factories, a deploy step,
progress callbacks). Each study keeps running and collecting numbers (plain dicts that go to
JSON) apart from rendering them (markdown, PNG, the console's tables).
"""

from .errors import StudyError

__all__ = ["StudyError"]
