"""Compute-domain rules (services, liveness, …), free of HTTP and importing only the db layer."""
