"""os-services policies: Nova's rule names and defaults, where the check falls, overrides, scope (spec 5)."""

from __future__ import annotations

import pytest

from novalite.api import policies
from novalite.api.policies import services as service_policies
from tests.api_client import ADMIN, MEMBER, PROJECT, Api, assert_fault

MISSING_UUID = "c4726392-27de-4ff9-b2e0-5aa1d08a520f"


def refused(action: str) -> str:
    return f"Policy doesn't allow os_compute_api:os-services:{action} to be performed."


@pytest.fixture
def api(tmp_path) -> Api:
    api = Api(tmp_path)
    api.compute("h1")
    return api


# -- the rules ------------------------------------------------------------------------------------

def test_rules_have_novas_names_defaults_and_scope():
    # spec 5: the three os-services rules default to rule:context_is_admin, scope_types ["project"]
    rules = {rule.name: rule for rule in policies.list_rules()}
    for action in ("list", "update", "delete"):
        rule = rules[f"os_compute_api:os-services:{action}"]
        assert rule.check_str == "rule:context_is_admin"
        assert rule.scope_types == ["project"]
        assert rule.deprecated_rule.name == "os_compute_api:os-services"
        assert rule.deprecated_rule.check_str == "rule:admin_api"
    assert rules["context_is_admin"].check_str == "role:admin"
    assert rules["admin_api"].check_str == "is_admin:True"
    assert (service_policies.LIST, service_policies.UPDATE, service_policies.DELETE) == (
        "os_compute_api:os-services:list", "os_compute_api:os-services:update",
        "os_compute_api:os-services:delete")


# -- non-admins get 403 ---------------------------------------------------------------------------

def test_non_admin_cannot_list(api):
    # spec 5: 403 forbidden "Policy doesn't allow os_compute_api:os-services:list to be performed."
    for version in ("2.1", "2.53", "latest"):
        assert_fault(api.get("/v2.1/os-services", token=MEMBER, version=version), 403, refused("list"))


def test_non_admin_cannot_update(api):
    # spec 5: ...:update, for the legacy actions and the 2.53 PUT
    uuid = api.rows()[0]["uuid"]
    with api.unchanged():
        for action in ("enable", "disable"):
            result = api.put(f"/v2.1/os-services/{action}", {"host": "h1", "binary": "nova-compute"},
                             token=MEMBER, version="2.1")
            assert_fault(result, 403, refused("update"))
        result = api.put("/v2.1/os-services/force-down", {"host": "h1", "binary": "nova-compute",
                                                          "forced_down": True}, token=MEMBER, version="2.11")
        assert_fault(result, 403, refused("update"))
        result = api.put(f"/v2.1/os-services/{uuid}", {"forced_down": True}, token=MEMBER, version="2.53")
        assert_fault(result, 403, refused("update"))


def test_non_admin_cannot_delete(api):
    # spec 5: ...:delete
    row = api.rows()[0]
    with api.unchanged():
        assert_fault(api.delete(f"/v2.1/os-services/{row['id']}", token=MEMBER), 403, refused("delete"))
        assert_fault(api.delete(f"/v2.1/os-services/{row['uuid']}", token=MEMBER, version="2.53"),
                     403, refused("delete"))


def test_admin_of_any_project_is_allowed(api):
    # spec 5: context_is_admin = role:admin (project-scoped)
    assert api.get("/v2.1/os-services", token=ADMIN).status_code == 200
    assert api.get("/v2.1/os-services", token="admin:fedcba9876").status_code == 200


# -- where the check falls ------------------------------------------------------------------------

def test_list_validates_the_query_before_the_policy(api):
    # spec 3.2 / 5: query validation before policy, so a non-admin with a bad parameter gets 400
    assert_fault(api.get("/v2.1/os-services", token=MEMBER, version="2.75", query_string="foo=1"),
                 400, "Additional properties are not allowed ('foo' was unexpected)")
    raw = api.raw("GET", "/v2.1/os-services", query="host=%ff", headers={"X-Auth-Token": MEMBER})
    assert_fault(raw, 400, "Query string is not UTF-8 encoded")
    assert_fault(api.get("/v2.1/os-services", token=MEMBER, version="2.74", query_string="foo=1"),
                 403, refused("list"))


def test_legacy_put_checks_the_body_then_the_policy_then_the_action(api):
    # spec 3.3 / 5: schema (400) → policy (403) → action lookup (404)
    with api.unchanged():
        assert_fault(api.put("/v2.1/os-services/frobnicate", {"host": "h1"}, token=MEMBER, version="2.1"),
                     400, "'binary' is a required property")
        assert_fault(api.put("/v2.1/os-services/frobnicate", {"host": "h1", "binary": "nova-compute"},
                             token=MEMBER, version="2.1"), 403, refused("update"))
        assert_fault(api.put("/v2.1/os-services/force-down", {"host": "h1", "binary": "nova-compute"},
                             token=MEMBER, version="2.10"), 403, refused("update"))
        assert_fault(api.put("/v2.1/os-services/disable-log-reason", {"host": "h1", "binary": "nova-compute"},
                             token=MEMBER, version="2.1"), 403, refused("update"))


def test_253_put_checks_the_body_and_uuid_before_the_policy(api):
    # spec 3.4 / 5: schema (400) → uuid (400) → policy (403) → lookup (404)
    with api.unchanged():
        assert_fault(api.put(f"/v2.1/os-services/{MISSING_UUID}", {"status": "x"}, token=MEMBER,
                             version="2.53"),
                     400, "Invalid input for field/attribute status. Value: x. 'x' is not one of "
                          "['enabled', 'disabled']")
        assert_fault(api.put("/v2.1/os-services/1", {"status": "enabled"}, token=MEMBER, version="2.53"),
                     400, "Invalid uuid 1")
        assert_fault(api.put(f"/v2.1/os-services/{MISSING_UUID}", {"status": "enabled"}, token=MEMBER,
                             version="2.53"), 403, refused("update"))
        assert_fault(api.put(f"/v2.1/os-services/{MISSING_UUID}", {}, token=MEMBER, version="2.53"),
                     403, refused("update"))


def test_delete_checks_the_policy_before_the_id(api):
    # spec 3.5 / 5: DELETE's policy check comes first
    with api.unchanged():
        assert_fault(api.delete("/v2.1/os-services/abc", token=MEMBER), 403, refused("delete"))
        assert_fault(api.delete("/v2.1/os-services/1", token=MEMBER, version="2.53"), 403, refused("delete"))
        assert_fault(api.delete("/v2.1/os-services/999", token=MEMBER), 403, refused("delete"))


# -- policy.yaml overrides ------------------------------------------------------------------------

def test_policy_file_named_in_oslo_policy_section_overrides_a_rule(tmp_path):
    # spec 5: rules are oslo.policy's; [oslo_policy] policy_file (relative to the config file) overrides
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "novalite.conf").write_text("[oslo_policy]\npolicy_file = my-policy.yaml\n")
    (tmp_path / "etc" / "my-policy.yaml").write_text('"os_compute_api:os-services:list": "role:reader"\n')
    api = Api(tmp_path / "run", config_file=tmp_path / "etc" / "novalite.conf")
    api.compute("h1")
    assert [s["host"] for s in api.services(token=MEMBER)] == ["h1"]
    with api.unchanged():
        assert_fault(api.put("/v2.1/os-services/disable", {"host": "h1", "binary": "nova-compute"},
                             token=MEMBER), 403, refused("update"))
        assert_fault(api.delete("/v2.1/os-services/1", token=MEMBER), 403, refused("delete"))


def test_policy_file_can_lock_out_admins(tmp_path):
    # spec 5: an override may also tighten a rule
    policy = tmp_path / "policy.yaml"
    policy.write_text('"os_compute_api:os-services:delete": "!"\n')
    api = Api(tmp_path / "run", env={"NOVALITE_OSLO_POLICY__POLICY_FILE": str(policy)})
    api.compute("h1")
    with api.unchanged():
        assert_fault(api.delete("/v2.1/os-services/1"), 403, refused("delete"))
    assert api.get("/v2.1/os-services").status_code == 200


def test_deprecated_default_is_admin_only_too(tmp_path):
    # spec 5: with enforce_new_defaults=False the deprecated os_compute_api:os-services (rule:admin_api,
    # is_admin:True) is OR-ed in; it is admin-only as well, so a member is still refused
    api = Api(tmp_path, env={"NOVALITE_OSLO_POLICY__ENFORCE_NEW_DEFAULTS": "false"})
    assert_fault(api.get("/v2.1/os-services", token=MEMBER), 403, refused("list"))
    assert api.get("/v2.1/os-services").status_code == 200


def test_override_of_the_deprecated_rule_name_carries_over(tmp_path):
    # spec 5 (oslo.policy, as in Nova): an operator's override of the old name os_compute_api:os-services
    # is carried over to the three new rules while they are not overridden themselves
    policy = tmp_path / "policy.yaml"
    policy.write_text('"os_compute_api:os-services": "role:reader"\n'
                      '"os_compute_api:os-services:delete": "rule:context_is_admin"\n')
    api = Api(tmp_path / "run", env={"NOVALITE_OSLO_POLICY__POLICY_FILE": str(policy)})
    api.compute("h1")
    assert api.get("/v2.1/os-services", token=MEMBER).status_code == 200
    assert_fault(api.delete("/v2.1/os-services/1", token=MEMBER), 403, refused("delete"))


# -- scope ----------------------------------------------------------------------------------------

def keystone_identity(roles: str, **extra: str) -> dict[str, str]:
    return {"X-Identity-Status": "Confirmed", "X-User-Id": "u1", "X-Roles": roles, **extra}


def test_project_scoped_keystone_admin_is_allowed(tmp_path):
    # spec 5: scope_types ["project"]
    api = Api(tmp_path, auth_strategy="keystone", keystone_headers=True)
    result = api.get("/v2.1/os-services", token=None,
                     headers=keystone_identity("admin,member,reader", **{"X-Project-Id": PROJECT}))
    assert result.status_code == 200


def test_system_scoped_keystone_identity_is_refused(tmp_path):
    # spec 5: scope is always enforced: a system-scoped token fails, even with the admin role
    api = Api(tmp_path, auth_strategy="keystone", keystone_headers=True)
    api.identity = keystone_identity("admin,member,reader", **{"X-Project-Id": PROJECT})
    api.compute("h1")
    system_admin = keystone_identity("admin,member,reader", **{"OpenStack-System-Scope": "all"})
    with api.unchanged():
        assert_fault(api.get("/v2.1/os-services", token=None, headers=system_admin), 403, refused("list"))
        assert_fault(api.put("/v2.1/os-services/disable", {"host": "h1", "binary": "nova-compute"},
                             token=None, headers=system_admin), 403, refused("update"))
        assert_fault(api.delete("/v2.1/os-services/1", token=None, headers=system_admin),
                     403, refused("delete"))


def test_keystone_member_is_refused(tmp_path):
    # spec 5: non-admin result is 403
    api = Api(tmp_path, auth_strategy="keystone", keystone_headers=True)
    result = api.get("/v2.1/os-services", token=None,
                     headers=keystone_identity("member,reader", **{"X-Project-Id": PROJECT}))
    assert_fault(result, 403, refused("list"))


# -- remembered decisions --------------------------------------------------------------------------

def test_remembered_decisions_follow_the_target_and_the_caller(tmp_path):
    # A decision is remembered per action, caller and target (novalite.api.policy.Enforcer): a member may
    # show its own project's server (Nova's PROJECT_READER_OR_ADMIN) and never another project's, in any
    # order of asking; an admin may show both.
    from novalite.api.policies.servers import SHOW
    from novalite.api.policy import Context, Enforcer
    from novalite.config import PolicyOpts
    from novalite.exceptions import PolicyNotAuthorized

    enforcer = Enforcer(PolicyOpts(), base_dir=str(tmp_path))
    member = Context("u1", "p1", ["member", "reader"])
    admin = Context("a1", "p9", ["admin", "member", "reader"])
    own, other = {"project_id": "p1"}, {"project_id": "p2"}
    for _ in range(2):
        assert enforcer.allows(member, SHOW, own)
        assert not enforcer.allows(member, SHOW, other)
        assert enforcer.allows(admin, SHOW, other)
        with pytest.raises(PolicyNotAuthorized):
            enforcer.authorize(member, SHOW, other)
    # A caller of the same user and project but without the role is another caller.
    assert not enforcer.allows(Context("u1", "p1", []), SHOW, own)
