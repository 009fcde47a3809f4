"""The monitor's safety gates and per-server policy: each a named rule, a small function that returns None
when it lets the monitor act, or the reason it holds (the reason starts with the rule's name, so every
decision in the journal and the log cites the rule that allowed or blocked it).

Host gates (anchors: ha-anchors.md 2.2, RHOSO InstanceHA's gate chain; Kubernetes' zone disruption states):
    quorum            act only while the compute API answers and enough of the known hosts still beat:
                      a monitor cut off from the hosts sees every host "fail" and must do nothing.
    mass-failure      more than a set share of the hosts failing at once is a network or power event, not
                      host failures: hold and alert rather than fence half the cloud.
    per-cycle-cap     at most so many hosts are recovered in one detection cycle.
    operator-disabled a host an operator disabled (any reason that is not the monitor's own marker, nor
                      the libvirt driver's automatic "AUTO: " one, spec 4.7) is left alone.

Server policy (the host's policy: its [host_group:<name>]'s options, else [monitor]'s; groups.py):
    opt-in            with evacuable_metadata_key and/or evacuable_extra_spec set, only the servers whose
                      metadata or flavor extra spec says true are evacuated (either one suffices).

The host-group rules (host-group: a host two groups claim is held; notify-only: a group's failures are only
journaled) are groups.py's.
"""

from __future__ import annotations

from collections.abc import Mapping

from oslo_utils import strutils

QUORUM = "quorum"
MASS_FAILURE = "mass-failure"
PER_CYCLE_CAP = "per-cycle-cap"
OPERATOR_DISABLED = "operator-disabled"
OPT_IN = "opt-in"
RULES = (QUORUM, MASS_FAILURE, PER_CYCLE_CAP, OPERATOR_DISABLED, OPT_IN)

# Every disabled_reason the monitor writes starts with this (recovery.py's markers); any other reason on a
# disabled host is somebody else's decision.
MARKER_PREFIX = "novalite-monitor:"
# The libvirt driver disables its own compute service with reasons starting so (spec 4.7): not an operator.
AUTO_DISABLED_PREFIX = "AUTO: "


def quorum(api_reachable: bool, alive_share: float, min_alive_share: float) -> str | None:
    """Hold unless the compute API answers and at least ``min_alive_share`` of the known hosts are alive."""
    if not api_reachable:
        return f"{QUORUM}: the compute API cannot be reached; an isolated monitor does nothing"
    if alive_share < min_alive_share:
        return (f"{QUORUM}: only {alive_share:.0%} of the known hosts are alive, below min_alive_share "
                f"{min_alive_share:.0%}; the monitor may be the one cut off")
    return None


def mass_failure(failed: int, known: int, max_failed_share: float) -> str | None:
    """Hold (and alert) when more than ``max_failed_share`` of the ``known`` hosts have failed at once."""
    if known <= 0 or failed / known <= max_failed_share:
        return None
    return (f"{MASS_FAILURE}: {failed} of {known} hosts failed at once ({failed / known:.0%}), more than "
            f"max_failed_share {max_failed_share:.0%}; holding for an operator")


def per_cycle_cap(n: int, cap: int) -> str | None:
    """Hold the ``n``-th host recovered in one cycle when that is more than ``cap`` (0: no cap)."""
    if cap <= 0 or n <= cap:
        return None
    return f"{PER_CYCLE_CAP}: host {n} of this cycle is over max_hosts_per_cycle {cap}; held for the next cycle"


def operator_disabled(service: Mapping) -> str | None:
    """Hold when the host's nova-compute service (an os-services record) was disabled by someone else."""
    if service.get("status") != "disabled":
        return None
    reason = service.get("disabled_reason") or ""
    if reason.startswith((MARKER_PREFIX, AUTO_DISABLED_PREFIX)):
        return None
    shown = f"reason {reason!r}" if reason else "no reason given"
    return f"{OPERATOR_DISABLED}: {service.get('host')} was disabled by an operator ({shown}); left alone"


def opt_in(server: Mapping, metadata_key: str, extra_spec: str,
           flavor_extra_specs: Mapping[str, str] | None = None) -> str | None:
    """Hold a server that has not opted in to evacuation, when opting in is required.

    ``flavor_extra_specs`` defaults to the server's embedded flavor's (compute API 2.47+).
    """
    if not metadata_key and not extra_spec:
        return None
    if metadata_key and _true((server.get("metadata") or {}).get(metadata_key)):
        return None
    if extra_spec:
        if flavor_extra_specs is None:
            flavor_extra_specs = (server.get("flavor") or {}).get("extra_specs") or {}
        if _true(flavor_extra_specs.get(extra_spec)):
            return None
    wanted = " or ".join(part for part in (
        f"metadata {metadata_key}=true" if metadata_key else "",
        f"flavor extra spec {extra_spec}=true" if extra_spec else "") if part)
    return f"{OPT_IN}: server {server.get('id')} has not opted in ({wanted}); not evacuated"


def _true(value: object) -> bool:
    return value is not None and strutils.bool_from_string(str(value), default=False)
