"""Ray Serve deployments for degraded-mode serving: replicas, the coded frontend, straggler models."""
