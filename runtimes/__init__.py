"""The action runtime: OpenWhisk's container contract (/init, /run) for Python actions."""
