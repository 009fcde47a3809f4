"""os-availability-zone policy rules, named and defaulted as in nova/policies/availability_zone.py."""

from oslo_policy import policy

BASE = "os_compute_api:os-availability-zone:%s"
LIST = BASE % "list"
DETAIL = BASE % "detail"

rules = [
    policy.DocumentedRuleDefault(
        name=LIST, check_str="@", description="List availability zone information without host information",
        operations=[{"method": "GET", "path": "/os-availability-zone"}], scope_types=["project"],
    ),
    policy.DocumentedRuleDefault(
        name=DETAIL, check_str="rule:context_is_admin",
        description="List detailed availability zone information with host information",
        operations=[{"method": "GET", "path": "/os-availability-zone/detail"}], scope_types=["project"],
    ),
]
