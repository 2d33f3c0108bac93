"""Serverless distributed training of LeNet-5: parameter server and workers talking through S3.

The pieces live in small modules; this one is the public face:
`dist_job` (settings, key layout, tensor encoding), `dist_data` (shards and batches),
`dist_steps` (one worker update, one PS apply), `dist_coordinator` (the step loop).
Tensors never travel in invocation payloads (OpenWhisk caps them at 1 MB): payloads carry
job, step and worker; S3 carries the model, the updates and the optimizer state.
"""

from .dist_coordinator import Coordinator, MetricsLog, read_metrics
from .dist_data import upload_mnist
from .dist_job import (JobConfig, JobLayout, StepFailedError, TrainingError, decode_vector, encode_vector,
                       new_job_name)
from .dist_steps import create_job, evaluate_version, load_config, ps_step, worker_step

__all__ = ["Coordinator", "JobConfig", "JobLayout", "MetricsLog", "StepFailedError", "TrainingError",
           "create_job", "decode_vector", "encode_vector", "evaluate_version", "load_config", "new_job_name",
           "ps_step", "read_metrics", "upload_mnist", "worker_step"]
