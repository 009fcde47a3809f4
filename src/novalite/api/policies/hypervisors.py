"""os-hypervisors policy rules, named and defaulted as in nova/policies/hypervisors.py."""

from oslo_policy import policy

BASE = "os_compute_api:os-hypervisors:%s"
LIST = BASE % "list"
LIST_DETAIL = BASE % "list-detail"
STATISTICS = BASE % "statistics"
SHOW = BASE % "show"
UPTIME = BASE % "uptime"
SEARCH = BASE % "search"
SERVERS = BASE % "servers"

_deprecated = policy.DeprecatedRule(
    name="os_compute_api:os-hypervisors",
    check_str="rule:admin_api",
    deprecated_reason="Split into per-action rules with admin-only defaults.",
    deprecated_since="21.0.0",
)


def _rule(name: str, description: str, path: str) -> policy.DocumentedRuleDefault:
    return policy.DocumentedRuleDefault(
        name=name, check_str="rule:context_is_admin", description=description,
        operations=[{"method": "GET", "path": path}], scope_types=["project"], deprecated_rule=_deprecated,
    )


rules = [
    _rule(LIST, "List all hypervisors.", "/os-hypervisors"),
    _rule(LIST_DETAIL, "List all hypervisors with details", "/os-hypervisors/details"),
    _rule(STATISTICS, "Show summary statistics for all hypervisors over all compute nodes.",
          "/os-hypervisors/statistics"),
    _rule(SHOW, "Show details for a hypervisor.", "/os-hypervisors/{hypervisor_id}"),
    _rule(UPTIME, "Show the uptime of a hypervisor.", "/os-hypervisors/{hypervisor_id}/uptime"),
    _rule(SEARCH, "Search hypervisor by hypervisor_hostname pattern.",
          "/os-hypervisors/{hypervisor_hostname_pattern}/search"),
    _rule(SERVERS, "List all servers on hypervisors that can match the provided hypervisor_hostname pattern.",
          "/os-hypervisors/{hypervisor_hostname_pattern}/servers"),
]
