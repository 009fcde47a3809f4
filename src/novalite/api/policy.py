"""oslo.policy enforcement: Nova's rules and defaults, overridable by a policy.yaml."""

from __future__ import annotations

import os
import threading
import time
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

    def cache_key(self) -> tuple:
        return (self.user_id, self.project_id, tuple(self.roles), self.system_scope)

    def credentials(self) -> dict:
        return {
            "user_id": self.user_id,
            "project_id": self.project_id,
            "roles": self.roles,
            "is_admin": self.is_admin,
            "system": self.system_scope,
        }


class Enforcer:
    """Nova's rules through oslo.policy, with its decisions remembered.

    A decision is a function of the rules, the action, the target and the caller's credentials alone (which
    ``Context.cache_key`` determines), so it is kept — per action, caller and target — until the policy file
    changes (looked at no more than once a second). oslo.policy's own evaluation costs ~0.1 ms per check (it
    inspects each check's signature every time), and a server's GET makes several.
    """

    POLICY_FILE_CHECK_INTERVAL = 1.0
    MAX_DECISIONS = 10_000  # forgotten all at once past this: many callers × targets in a long-lived worker

    def __init__(self, opts: PolicyOpts, base_dir: str | None = None):
        conf = cfg.ConfigOpts()
        conf([], project="novalite", default_config_files=[], default_config_dirs=[])
        policy_file = Path(opts.policy_file)
        if not policy_file.is_absolute():
            policy_file = Path(base_dir or os.getcwd()) / policy_file
        self.policy_file = policy_file
        self._enforcer = oslo_policy.Enforcer(conf, policy_file=str(policy_file))
        conf.set_override("enforce_new_defaults", opts.enforce_new_defaults, group="oslo_policy")
        self._enforcer.register_defaults(policies.list_rules())
        self._enforcer.load_rules()
        self._decisions: dict[tuple, bool] = {}
        self._lock = threading.Lock()
        self._checked_at = time.monotonic()
        self._file_stamp = self._policy_file_stamp()

    def _policy_file_stamp(self) -> tuple | None:
        try:
            st = self.policy_file.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def _forget_decisions_if_policy_changed(self) -> None:
        now = time.monotonic()
        if now - self._checked_at < self.POLICY_FILE_CHECK_INTERVAL:
            return
        with self._lock:
            self._checked_at = now
            stamp = self._policy_file_stamp()
            if stamp != self._file_stamp:
                self._file_stamp = stamp
                self._enforcer.load_rules(force_reload=True)
                self._decisions = {}

    def _allowed(self, context: Context, action: str, target: dict) -> bool:
        try:
            self._enforcer.authorize(action, target, context.credentials(), do_raise=True)
        except (oslo_policy.PolicyNotAuthorized, oslo_policy.InvalidScope):
            return False
        return True

    def authorize(self, context: Context, action: str, target: dict | None = None) -> None:
        """Raise Nova's 403 unless ``action`` is allowed (a wrong-scope token is refused too). Without a
        target, the caller's own project and user are the target (Nova's default)."""
        if target is None:
            target = {"project_id": context.project_id, "user_id": context.user_id}
        self._forget_decisions_if_policy_changed()
        try:
            key = (action, context.cache_key(), tuple(sorted(target.items())))
            allowed = self._decisions.get(key)
        except TypeError:  # a target value that cannot be a key (a list): decided each time
            key, allowed = None, None
        if allowed is None:
            allowed = self._allowed(context, action, target)
            if key is not None:
                if len(self._decisions) >= self.MAX_DECISIONS:
                    self._decisions = {}
                self._decisions[key] = allowed
        if not allowed:
            raise PolicyNotAuthorized(action)

    def allows(self, context: Context, action: str, target: dict | None = None) -> bool:
        """Nova's ``context.can(..., fatal=False)``: the decision, without a 403."""
        try:
            self.authorize(context, action, target)
        except PolicyNotAuthorized:
            return False
        return True
