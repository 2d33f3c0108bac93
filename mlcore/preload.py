"""What a stem cell of the project's ML image imports before any action is assigned to it.

The launcher imports this module while it waits for /init, so a cold start of an ML
action pays only for the action's own code: torch and the rest of the stack are in
memory, and botocore has read the S3 service description that every new client needs
(the first `boto3.client("s3")` in a process spends tens of milliseconds parsing it).
Nothing here reaches the network.
"""

import boto3
import numpy  # noqa: F401
import PIL.Image  # noqa: F401
import torch
import torchvision  # noqa: F401

from . import fetch, inference, preprocess, storage  # noqa: F401
from .training import coordinator, worker  # noqa: F401

# the default session's loader caches the service model; clients made later by the action reuse it
boto3.client(
    "s3",
    region_name="us-east-1",
    endpoint_url="http://127.0.0.1:9",
    aws_access_key_id="preload",
    aws_secret_access_key="preload",
)

# an optimizer's first construction imports torch._dynamo (about a second): a training worker's cold start
_param = torch.nn.Parameter(torch.zeros(1))
torch.optim.SGD([_param], lr=0.1, momentum=0.9, nesterov=True).step()
del _param
