"""Virt drivers: one small interface (driver.py), one file per hypervisor, chosen by [compute] compute_driver.

Adding a driver is one file and one line in DRIVERS; a driver's module is imported only when chosen,
so a hypervisor's client library is needed only on the hosts that run it.
"""

from __future__ import annotations

import importlib

from novalite.agent.virt.driver import ComputeDriver

# compute_driver name → "module:class"
DRIVERS: dict[str, str] = {
    "simulated": "novalite.agent.virt.simulated:SimulatedDriver",
}


def load_driver(name: str, **options: object) -> ComputeDriver:
    """The driver called ``name``, built with ``options`` (its own keyword arguments)."""
    try:
        module_name, class_name = DRIVERS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown compute_driver {name!r}; known: {', '.join(sorted(DRIVERS))}") from None
    driver_class = getattr(importlib.import_module(module_name), class_name)
    return driver_class(**options)
