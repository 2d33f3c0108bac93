"""Serverless data-parallel training of LeNet-5 on MNIST, with tensors moving through object storage.

Read in this order:
- `job`: the settings (JobConfig), the storage keys (JobLayout) and the learning-rate schedule;
- `data`: MNIST from storage or disk, shards and batches as pure functions of the seed;
- `trainer`: a worker's model, data and optimizer over mlcore.compute (gradient, local SGD steps);
- `exchange`: updates in the weights format (mlcore.weights), and the puts and polling gets between workers;
- `worker`: a long-lived worker's rounds, checkpoints, replay and hand-off;
- `coordinator`: starts, watches and replaces workers, evaluates checkpoints, hands off;
- `report`: time to accuracy and the time split of a job; `baseline`: one process, same recipe.

The OpenWhisk actions (actions/mnist-train/worker and train) are thin edges over `worker`
and `coordinator`; `deployer train` deploys them, starts a job and follows it.
"""
