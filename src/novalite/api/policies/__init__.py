"""Policy rules with Nova's names and defaults (spec section 5), one module per resource."""

from oslo_policy import policy

from novalite.api.policies import (
    aggregates,
    availability_zones,
    evacuate,
    flavors,
    hypervisors,
    instance_actions,
    migrations,
    servers,
    services,
)

RULE_ADMIN_API = "rule:admin_api"

base_rules = [
    policy.RuleDefault(
        "context_is_admin", "role:admin", "Decides what is required for the 'is_admin:True' check"
    ),
    policy.RuleDefault("admin_api", "is_admin:True", "Default rule for most Admin APIs."),
    policy.RuleDefault("project_reader_api", "role:reader and project_id:%(project_id)s",
                       "Default rule for Project level read only APIs."),
    policy.RuleDefault("project_reader_or_admin", "rule:project_reader_api or rule:context_is_admin",
                       "Default rule for Project reader or admin APIs."),
    policy.RuleDefault("project_member_api", "role:member and project_id:%(project_id)s",
                       "Default rule for Project level non admin APIs."),
    policy.RuleDefault("project_member_or_admin", "rule:project_member_api or rule:context_is_admin",
                       "Default rule for Project Member or admin APIs."),
    policy.RuleDefault("project_manager_api", "role:manager and project_id:%(project_id)s",
                       "Default rule for Project level management APIs."),
    policy.RuleDefault("project_manager_or_admin", "rule:project_manager_api or rule:context_is_admin",
                       "Default rule for Project manager or admin APIs."),
]


def list_rules() -> list:
    return [*base_rules, *services.rules, *flavors.rules,
            *hypervisors.rules, *availability_zones.rules, *aggregates.rules,
            *evacuate.rules, *migrations.rules, *instance_actions.rules, *servers.rules]
