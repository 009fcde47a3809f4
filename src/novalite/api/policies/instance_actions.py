"""os-instance-actions policy rules, named and defaulted as in nova/policies/instance_actions.py.

``list`` and ``show`` are the server's project readers' (and admin's); ``events`` (every event with its
traceback, and from 2.62 its host) and ``events:details`` (2.84's details) are admin's.
"""

from oslo_policy import policy

BASE = "os_compute_api:os-instance-actions:%s"
LIST = BASE % "list"
SHOW = BASE % "show"
EVENTS = BASE % "events"
EVENTS_DETAILS = BASE % "events:details"

_deprecated = policy.DeprecatedRule(
    name="os_compute_api:os-instance-actions",
    check_str="is_admin:True or project_id:%(project_id)s",
    deprecated_reason="Split into list and show rules with reader defaults.",
    deprecated_since="21.0.0",
)
_ACTIONS = "/servers/{server_id}/os-instance-actions"
_ACTION = "/servers/{server_id}/os-instance-actions/{request_id}"

rules = [
    policy.DocumentedRuleDefault(
        name=EVENTS_DETAILS, check_str="rule:context_is_admin",
        description='Add "details" key in action events for a server (microversion 2.84 and later).',
        operations=[{"method": "GET", "path": _ACTION}], scope_types=["project"],
    ),
    policy.DocumentedRuleDefault(
        name=EVENTS, check_str="rule:context_is_admin",
        description="Add events details in action details for a server (the traceback of each event, and "
                    "from 2.62 its host).",
        operations=[{"method": "GET", "path": _ACTION}], scope_types=["project"],
    ),
    policy.DocumentedRuleDefault(
        name=LIST, check_str="rule:project_reader_or_admin", description="List actions for a server.",
        operations=[{"method": "GET", "path": _ACTIONS}], scope_types=["project"], deprecated_rule=_deprecated,
    ),
    policy.DocumentedRuleDefault(
        name=SHOW, check_str="rule:project_reader_or_admin", description="Show action details for a server.",
        operations=[{"method": "GET", "path": _ACTION}], scope_types=["project"], deprecated_rule=_deprecated,
    ),
]
