"""Processes that run on compute hosts and speak to the control plane over HTTP."""
