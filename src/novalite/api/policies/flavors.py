"""Flavor policy rules, named and defaulted as in nova/policies/flavor_manage.py and
flavor_extra_specs.py (only the rules the flavor resource checks).

Listing and showing flavors has no rule in Nova: every caller may, and visibility of private
flavors follows the caller's project (novalite.domain.flavors).
"""

from oslo_policy import policy

MANAGE = "os_compute_api:os-flavor-manage:%s"
CREATE = MANAGE % "create"
UPDATE = MANAGE % "update"
DELETE = MANAGE % "delete"
# Whether extra_specs appear in flavor bodies from 2.61 (checked quietly: no 403, just no key).
EXTRA_SPECS_INDEX = "os_compute_api:os-flavor-extra-specs:index"

rules = [
    policy.DocumentedRuleDefault(
        name=CREATE,
        check_str="rule:context_is_admin",
        description="Create a flavor",
        operations=[{"method": "POST", "path": "/flavors"}],
        scope_types=["project"],
    ),
    policy.DocumentedRuleDefault(
        name=UPDATE,
        check_str="rule:context_is_admin",
        description="Update a flavor",
        operations=[{"method": "PUT", "path": "/flavors/{flavor_id}"}],
        scope_types=["project"],
    ),
    policy.DocumentedRuleDefault(
        name=DELETE,
        check_str="rule:context_is_admin",
        description="Delete a flavor",
        operations=[{"method": "DELETE", "path": "/flavors/{flavor_id}"}],
        scope_types=["project"],
    ),
    policy.DocumentedRuleDefault(
        name=EXTRA_SPECS_INDEX,
        check_str="rule:project_reader_or_admin",
        description="List extra specs for a flavor. Starting with microversion 2.61, extra specs may be "
                    "returned in responses for the flavor resource.",
        operations=[
            {"method": "GET", "path": "/flavors/{flavor_id}/os-extra_specs/"},
            {"method": "POST", "path": "/flavors"},
            {"method": "GET", "path": "/flavors/detail"},
            {"method": "GET", "path": "/flavors/{flavor_id}"},
            {"method": "PUT", "path": "/flavors/{flavor_id}"},
        ],
        scope_types=["project"],
    ),
]
