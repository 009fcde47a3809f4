"""The monitor's recovery policy per host group: which policy a failed host follows, and why.

A host named or matched (fnmatch) by the ``hosts`` of one ``[host_group:<name>]`` section follows that group's
policy, each option the group leaves out taken from [monitor]; a host in no group follows [monitor] alone
(one policy for every host, as before groups existed). The anchor is Masakari's failover segments
(ha-anchors.md 1.2): per segment a recovery method and reserved hosts; here also the opt-in keys, the
priority key, leave_disabled, and whether evacuations stay inside the group.

Rules, cited in the journal by these names:
    host-group      the policy a host follows: its group's (and which ``hosts`` entry matched it), or
                    [monitor]'s. A host two groups match is a configuration error: the loader refuses what
                    the file says outright, the monitor refuses to start when a known host matches two
                    groups' patterns, and holds the recovery of one that appears later (it alerts; a human
                    fixes the file).
    notify-only     recovery_method = notify: the failure is journaled (a metric counts it) and nothing is
                    done to the host: not fenced, not forced down, nothing evacuated. Some groups want a human.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from novalite.config import HostGroupOpts, MonitorOpts, Settings

HOST_GROUP = "host-group"
NOTIFY_ONLY = "notify-only"
EVACUATE, NOTIFY = "evacuate", "notify"
MONITOR = "[monitor]"  # the policy of hosts in no group


class AmbiguousHost(ValueError):
    """A host two host groups claim: the configuration must say which policy it follows."""


@dataclass(frozen=True)
class Policy:
    """How the monitor recovers one host: its group's options over [monitor]'s."""

    source: str  # "[host_group:<name>]", or "[monitor]" for a host in no group
    group: str | None
    recovery_method: str  # evacuate | notify
    reserved_hosts: tuple[str, ...]
    evacuable_metadata_key: str
    evacuable_extra_spec: str
    priority_metadata_key: str
    leave_disabled: bool
    targets: str  # any | group
    fallback: str  # scheduler | none (with targets = group)
    because: str  # why the host follows this policy, for the journal
    members: HostGroupOpts | None = None

    def in_group(self, host: str) -> bool:
        """Is ``host`` one of the group's hosts (always False for [monitor]'s policy)."""
        return self.members is not None and self.members.matching(host) is not None

    def cited(self) -> dict:
        """The policy as the journal cites it with a decision."""
        return {"policy": self.source, "policy_rule": f"{HOST_GROUP}: {self.because}"}

    def summary(self) -> dict:
        """Every option of the policy, for the journal's record of a failure."""
        summary = {**self.cited(), "recovery_method": self.recovery_method}
        if self.recovery_method == EVACUATE:
            summary.update(reserved_hosts=",".join(self.reserved_hosts), targets=self.targets,
                           evacuable_metadata_key=self.evacuable_metadata_key,
                           evacuable_extra_spec=self.evacuable_extra_spec,
                           priority_metadata_key=self.priority_metadata_key, leave_disabled=self.leave_disabled)
            if self.targets == "group":
                summary["fallback"] = self.fallback
        return summary


def _names(text: str) -> tuple[str, ...]:
    return tuple(name for name in (part.strip() for part in text.split(",")) if name)


def monitor_policy(opts: MonitorOpts, host: str) -> Policy:
    return Policy(MONITOR, None, EVACUATE, _names(opts.reserved_hosts), opts.evacuable_metadata_key,
                  opts.evacuable_extra_spec, opts.priority_metadata_key, opts.leave_disabled, "any", "scheduler",
                  f"{host} is in no [host_group:*]; the [monitor] policy")


def group_policy(name: str, group: HostGroupOpts, opts: MonitorOpts, because: str) -> Policy:
    def pick(option: str):
        value = getattr(group, option)
        return getattr(opts, option) if value is None else value

    return Policy(f"[host_group:{name}]", name, group.recovery_method, _names(pick("reserved_hosts")),
                  pick("evacuable_metadata_key"), pick("evacuable_extra_spec"), pick("priority_metadata_key"),
                  pick("leave_disabled"), group.targets, group.fallback, because, group)


class HostGroups:
    """The host groups of one configuration, resolving hosts to their policies."""

    def __init__(self, settings: Settings):
        self.opts = settings.monitor
        self.groups = dict(sorted(settings.host_groups.items()))

    def matches(self, host: str) -> list[tuple[str, str]]:
        """(group, the ``hosts`` entry that matched) of every group that claims ``host``."""
        return [(name, entry) for name, group in self.groups.items() if (entry := group.matching(host)) is not None]

    def policy(self, host: str) -> Policy:
        """The policy ``host`` follows; AmbiguousHost when two groups claim it."""
        found = self.matches(host)
        if len(found) > 1:
            claims = " and ".join(f"[host_group:{name}] (hosts {entry!r})" for name, entry in found)
            raise AmbiguousHost(f"{HOST_GROUP}: {host} is in two host groups, {claims}; a host follows one "
                                f"recovery policy: fix the configuration")
        if not found:
            return monitor_policy(self.opts, host)
        name, entry = found[0]
        because = f"{host} is in [host_group:{name}] (hosts {entry!r})"
        return group_policy(name, self.groups[name], self.opts, because)

    def check(self, hosts: Iterable[str]) -> None:
        """ValueError naming every host of ``hosts`` that two groups claim (the monitor's start)."""
        errors = []
        for host in sorted(set(hosts)):
            try:
                self.policy(host)
            except AmbiguousHost as error:
                errors.append(str(error).removeprefix(f"{HOST_GROUP}: "))
        if errors:
            raise ValueError("; ".join(errors))
