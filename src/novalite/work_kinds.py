"""The kinds of a compute host's work, as the agent interface names them on the wire (both sides use these).

The control plane's side is novalite.domain.host_work, the agent's novalite.agent.work; this module imports
nothing heavier than the standard library, so an agent starts without the database layer.
"""

from __future__ import annotations

import traceback

SPAWN, REBUILD, POWER_OFF, POWER_ON, DESTROY = "spawn", "rebuild", "power_off", "power_on", "destroy"
KINDS = (SPAWN, REBUILD, POWER_OFF, POWER_ON, DESTROY)


def format_exception(error: BaseException) -> str:
    """A result's error text: the whole traceback (Nova's instance action event traceback)."""
    return "".join(traceback.format_exception(error))
