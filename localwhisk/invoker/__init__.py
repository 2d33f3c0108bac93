"""The invoker and its containers: processes of this machine, or Docker containers."""
