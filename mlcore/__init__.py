"""Small ML and storage code shared by actions, the deployer, training and FedAvg.

Bundled into every action zip at deploy time and installed in the runtime image, so
actions run unchanged on real OpenWhisk. Imports nothing from `deployer`.
"""
