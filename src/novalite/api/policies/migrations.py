"""os-migrations policy rules, named and defaulted as in nova/policies/migrations.py (Nova 32.0.0 on).

``index`` lets a project manager list their own project's migrations (2.80's project_id filter) without
host names; ``index:all_projects`` (listing every project's, or another's) and ``index:host`` (seeing
source and destination hosts and nodes) are admin's.
"""

from oslo_policy import policy

BASE = "os_compute_api:os-migrations:%s"
INDEX = BASE % "index"
INDEX_ALL_PROJECTS = BASE % "index:all_projects"
INDEX_HOST = BASE % "index:host"

# Nova lists the original rule as the deprecated form of the two new ones, so an operator's override of
# ``index`` carries over to them.
_deprecated_index = policy.DeprecatedRule(
    name=INDEX,
    check_str="rule:context_is_admin",
    deprecated_reason="Listing migrations was split into index, index:all_projects and index:host.",
    deprecated_since="32.0.0",
)
_OPERATIONS = [{"method": "GET", "path": "/os-migrations"}]

rules = [
    policy.DocumentedRuleDefault(
        name=INDEX, check_str="rule:project_manager_or_admin", description="List migrations without host info",
        operations=_OPERATIONS, scope_types=["project"],
    ),
    policy.DocumentedRuleDefault(
        name=INDEX_ALL_PROJECTS, check_str="rule:context_is_admin",
        description="List migrations for all or cross projects", operations=_OPERATIONS,
        scope_types=["project"], deprecated_rule=_deprecated_index,
    ),
    policy.DocumentedRuleDefault(
        name=INDEX_HOST, check_str="rule:context_is_admin", description="List migrations with host info",
        operations=_OPERATIONS, scope_types=["project"], deprecated_rule=_deprecated_index,
    ),
]
