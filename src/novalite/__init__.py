"""novalite: a Nova-compatible compute control plane built around force-down and evacuation."""

__version__ = "0.1.0"
