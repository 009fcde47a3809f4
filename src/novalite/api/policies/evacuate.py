"""os-evacuate policy rule, named and defaulted as in nova/policies/evacuate.py (spec 5)."""

from oslo_policy import policy

EVACUATE = "os_compute_api:os-evacuate"

rules = [
    policy.DocumentedRuleDefault(
        name=EVACUATE,
        check_str="rule:context_is_admin",
        description="Evacuate a server from a failed host to a new host",
        operations=[{"method": "POST", "path": "/servers/{server_id}/action (evacuate)"}],
        scope_types=["project"],
    ),
]
