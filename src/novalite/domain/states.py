"""Nova's server states: vm_state, task_state, power_state, and the API status they show as.

vm_state is where a server rests, task_state what is being done to it (None when idle); the API's
``status`` is derived from the two (nova/api/openstack/common.py's state map).
"""

from __future__ import annotations

# vm_states (nova/compute/vm_states.py)
ACTIVE = "active"
BUILDING = "building"
STOPPED = "stopped"
ERROR = "error"
DELETED = "deleted"
SOFT_DELETED = "soft-delete"

# task_states (nova/compute/task_states.py) novalite sets
SCHEDULING = "scheduling"
SPAWNING = "spawning"
POWERING_OFF = "powering-off"
POWERING_ON = "powering-on"
DELETING = "deleting"
REBUILDING = "rebuilding"
REBUILD_SPAWNING = "rebuild_spawning"

# power_state (nova/compute/power_state.py), as the API shows it in OS-EXT-STS:power_state
NOSTATE = 0
RUNNING = 1
SHUTDOWN = 4

# Migration statuses of an evacuation (spec 6).
MIGRATION_ACCEPTED = "accepted"
MIGRATION_PRE_MIGRATING = "pre-migrating"
MIGRATION_DONE = "done"
MIGRATION_COMPLETED = "completed"
MIGRATION_FAILED = "failed"
MIGRATION_ERROR = "error"
EVACUATION = "evacuation"
# The statuses in which the source host still has to clean up after an evacuation (Nova's
# _destroy_evacuated_instances filter).
EVACUATION_SOURCE_CLEANUP = (MIGRATION_ACCEPTED, MIGRATION_PRE_MIGRATING, MIGRATION_DONE)

_REBUILD = {REBUILDING: "REBUILD", "rebuild_block_device_mapping": "REBUILD", REBUILD_SPAWNING: "REBUILD"}
_STATUS = {
    ACTIVE: {"default": "ACTIVE", "rebooting": "REBOOT", "reboot_pending": "REBOOT", "reboot_started": "REBOOT",
             "rebooting_hard": "HARD_REBOOT", "reboot_pending_hard": "HARD_REBOOT",
             "reboot_started_hard": "HARD_REBOOT", "updating_password": "PASSWORD", **_REBUILD,
             "migrating": "MIGRATING", "resize_prep": "RESIZE", "resize_migrating": "RESIZE",
             "resize_migrated": "RESIZE", "resize_finish": "RESIZE"},
    BUILDING: {"default": "BUILD"},
    STOPPED: {"default": "SHUTOFF", "resize_prep": "RESIZE", "resize_migrating": "RESIZE",
              "resize_migrated": "RESIZE", "resize_finish": "RESIZE", **_REBUILD},
    "resized": {"default": "VERIFY_RESIZE", "resize_reverting": "REVERT_RESIZE"},
    "paused": {"default": "PAUSED", "migrating": "MIGRATING"},
    "suspended": {"default": "SUSPENDED"},
    "rescued": {"default": "RESCUE"},
    ERROR: {"default": "ERROR", **_REBUILD},
    DELETED: {"default": "DELETED"},
    SOFT_DELETED: {"default": "SOFT_DELETED"},
    "shelved": {"default": "SHELVED"},
    "shelved_offloaded": {"default": "SHELVED_OFFLOADED"},
}


def status_of(vm_state: str | None, task_state: str | None) -> str:
    """The API status of a server (Nova's common.status_from_state); UNKNOWN for a state Nova has none for."""
    by_task = _STATUS.get(vm_state or "", {"default": "UNKNOWN"})
    return by_task.get(task_state or "", by_task["default"])


def task_and_vm_states_of(statuses: list[str]) -> tuple[list[str], list[str]]:
    """Nova's task_and_vm_state_from_status: the vm_states and task_states (with "default" for "any")
    that show as any of ``statuses``, each sorted."""
    wanted = {s.strip().lower() for s in statuses}
    vm_found, task_found = set(), set()
    for vm, by_task in _STATUS.items():
        for task, shown in by_task.items():
            if shown.lower() in wanted:
                vm_found.add(vm)
                task_found.add(task)
    return sorted(vm_found), sorted(task_found)


def vm_states_of(status: str) -> list[str]:
    """The vm_states a ``status`` filter matches (Nova's task_and_vm_state_from_status, vm side)."""
    status = status.upper()
    return [vm for vm, by_task in _STATUS.items() if status in by_task.values()]
