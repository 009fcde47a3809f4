"""oslo.policy enforcement: Nova's rules and defaults, overridable by a policy.yaml."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from oslo_config import cfg
from oslo_policy import policy as oslo_policy

from novalite.api import policies
from novalite.config import PolicyOpts
from novalite.exceptions import PolicyNotAuthorized


@dataclass
class Context:
    """Who is calling: what auth established, in the form oslo.policy reads."""

    user_id: str | None
    project_id: str | None
    roles: list[str] = field(default_factory=list)
    system_scope: str | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles

    def credentials(self) -> dict:
        return {
            "user_id": self.user_id,
            "project_id": self.project_id,
            "roles": self.roles,
            "is_admin": self.is_admin,
            "system": self.system_scope,
        }


class Enforcer:
    def __init__(self, opts: PolicyOpts, base_dir: str | None = None):
        conf = cfg.ConfigOpts()
        conf([], project="novalite", default_config_files=[], default_config_dirs=[])
        policy_file = opts.policy_file
        if base_dir and not Path(policy_file).is_absolute():
            policy_file = str(Path(base_dir) / policy_file)
        self._enforcer = oslo_policy.Enforcer(conf, policy_file=policy_file)
        conf.set_override("enforce_new_defaults", opts.enforce_new_defaults, group="oslo_policy")
        self._enforcer.register_defaults(policies.list_rules())
        self._enforcer.load_rules()

    def authorize(self, context: Context, action: str, target: dict | None = None) -> None:
        """Raise Nova's 403 unless ``action`` is allowed (a wrong-scope token is refused too)."""
        target = target or {"project_id": context.project_id, "user_id": context.user_id}
        try:
            self._enforcer.authorize(action, target, context.credentials(), do_raise=True)
        except (oslo_policy.PolicyNotAuthorized, oslo_policy.InvalidScope):
            raise PolicyNotAuthorized(action) from None
