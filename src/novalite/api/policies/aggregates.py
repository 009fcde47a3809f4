"""os-aggregates policy rules novalite serves, named and defaulted as in nova/policies/aggregates.py."""

from oslo_policy import policy

INDEX = "os_compute_api:os-aggregates:index"

rules = [
    policy.DocumentedRuleDefault(
        name=INDEX, check_str="rule:context_is_admin", description="List all aggregates",
        operations=[{"method": "GET", "path": "/os-aggregates"}], scope_types=["project"],
    ),
]
