"""Policy rules with Nova's names and defaults (spec section 5), one module per resource."""

from oslo_policy import policy

from novalite.api.policies import services

RULE_ADMIN_API = "rule:admin_api"

base_rules = [
    policy.RuleDefault(
        "context_is_admin", "role:admin", "Decides what is required for the 'is_admin:True' check"
    ),
    policy.RuleDefault("admin_api", "is_admin:True", "Default rule for most Admin APIs."),
]


def list_rules() -> list:
    return [*base_rules, *services.rules]
