"""os-services policy rules, named and defaulted as in nova/policies/services.py."""

from oslo_policy import policy

BASE = "os_compute_api:os-services:%s"
LIST = BASE % "list"
UPDATE = BASE % "update"
DELETE = BASE % "delete"

_deprecated = policy.DeprecatedRule(
    name="os_compute_api:os-services",
    check_str="rule:admin_api",
    deprecated_reason="Split into list, update and delete rules with admin-only defaults.",
    deprecated_since="21.0.0",
)

rules = [
    policy.DocumentedRuleDefault(
        name=LIST,
        check_str="rule:context_is_admin",
        description="List all running Compute services in a region.",
        operations=[{"method": "GET", "path": "/os-services"}],
        scope_types=["project"],
        deprecated_rule=_deprecated,
    ),
    policy.DocumentedRuleDefault(
        name=UPDATE,
        check_str="rule:context_is_admin",
        description="Update a Compute service.",
        operations=[{"method": "PUT", "path": "/os-services/{service_id}"}],
        scope_types=["project"],
        deprecated_rule=_deprecated,
    ),
    policy.DocumentedRuleDefault(
        name=DELETE,
        check_str="rule:context_is_admin",
        description="Delete a Compute service.",
        operations=[{"method": "DELETE", "path": "/os-services/{service_id}"}],
        scope_types=["project"],
        deprecated_rule=_deprecated,
    ),
]
