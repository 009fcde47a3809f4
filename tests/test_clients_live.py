"""The real OpenStack clients from PyPI against a live novalite API with real compute agents.

``nova`` (python-novaclient), ``openstack`` (OSC), openstacksdk and tempest.lib's ServicesClient
drive os-services exactly as they would drive Nova (spec/clients.md sections 1-4 and 6); after
every change the test reads the server's own view back through GET /os-services.

Tests that only change flags share one stack of three agents (``shared_stack``) and start from a
clean slate (``clean_services``); tests that stop or delete agents start their own.
"""

from __future__ import annotations

import re
import uuid

import openstack as openstacksdk
import pytest
from tempest.lib import exceptions as tempest_exc

from novalite.cli.up import StackPaths, write_clouds_yaml
from tests import databases
from tests.clients import (
    client_env,
    compute_microversion,
    is_canonical_uuid,
    nova,
    openstack,
    openstack_json,
    parse_table,
    raw_put,
    services_by_host,
    start_stack_with_computes,
    stop_agent,
    tempest_services_client,
)
from tests.stack import Stack, wait_until

pytestmark = pytest.mark.live

HOSTS = ("compute1", "compute2", "compute3")
COMPUTE = "nova-compute"


@pytest.fixture(scope="module")
def shared_stack(tmp_path_factory):
    root = tmp_path_factory.mktemp("clients-live")
    with databases.for_module(root) as database_url:
        stack = Stack(root=root / "stack", database_url=database_url)
        try:
            stack.start_api()
            for host in HOSTS:
                stack.start_compute(host)
            stack.wait_for_computes(*HOSTS)
            yield stack
        finally:
            stack.close()


@pytest.fixture
def clean_services(shared_stack):
    """Every compute of the shared stack enabled, without reason, not forced down."""
    for service in services_by_host(shared_stack).values():
        resp = raw_put(shared_stack, f"/os-services/{service['id']}",
                       {"status": "enabled", "forced_down": False}, "2.53")
        assert resp.status_code == 200, resp.text
    return shared_stack


def assert_flags(stack: Stack, host: str, *, forced_down: bool = False, status: str = "enabled",
                 reason: str | None = None) -> dict:
    """The server's record of ``host`` has these flags, and state follows forced_down (spec 4.1)."""
    service = services_by_host(stack)[host]
    expected = {"forced_down": forced_down, "status": status, "disabled_reason": reason,
                "state": "down" if forced_down else "up"}
    assert {k: service[k] for k in expected} == expected, service
    return service


def assert_untouched(stack: Stack, *hosts: str) -> None:
    for host in hosts:
        assert_flags(stack, host)


# -- nova CLI (python-novaclient 18), clients.md section 1 -----------------------------------------------

def test_nova_service_list_shows_what_the_api_holds_with_host_and_binary_filters(clean_services):
    stack = clean_services
    legacy = services_by_host(stack, "2.11")
    rows = parse_table(nova(stack, "service-list", version="2.11").stdout)
    assert {r["Host"]: r["Id"] for r in rows} == {h: str(s["id"]) for h, s in legacy.items()}
    assert {(r["Binary"], r["Zone"], r["Status"], r["State"], r["Forced down"]) for r in rows} == {
        (COMPUTE, "nova", "enabled", "up", "False")}

    rows = parse_table(nova(stack, "service-list", "--host", "compute2", version="2.11").stdout)
    assert [r["Host"] for r in rows] == ["compute2"]
    rows = parse_table(nova(stack, "service-list", "--binary", COMPUTE, version="2.11").stdout)
    assert sorted(r["Host"] for r in rows) == list(HOSTS)
    assert parse_table(nova(stack, "service-list", "--binary", "nova-scheduler", version="2.11").stdout) == []

    # Without a version novaclient negotiates min(server max, 2.96): ids are UUIDs (spec 3.2).
    rows = parse_table(nova(stack, "service-list", "--host", "compute3").stdout)
    assert [r["Id"] for r in rows] == [services_by_host(stack)["compute3"]["id"]]


def test_nova_force_down_by_hostname_at_2_11_and_unset(clean_services):
    stack = clean_services
    # clients.md 1.2: PUT /os-services/force-down {"host","binary":"nova-compute","forced_down":true}.
    out = parse_table(nova(stack, "service-force-down", "compute1", version="2.11").stdout)
    assert out == [{"Host": "compute1", "Binary": COMPUTE, "Forced down": "True"}]
    assert_flags(stack, "compute1", forced_down=True)
    assert_untouched(stack, "compute2", "compute3")

    out = parse_table(nova(stack, "service-force-down", "--unset", "compute1", version="2.11").stdout)
    assert out == [{"Host": "compute1", "Binary": COMPUTE, "Forced down": "False"}]
    assert_untouched(stack, *HOSTS)

    # Spec 3.3 step 6: an unknown host is a 404 with Nova's message, shown by novaclient.
    failed = nova(stack, "service-force-down", "nosuchhost", version="2.11", expect_rc=1)
    assert "ERROR (NotFound): Host 'nosuchhost' is not mapped to any cell (HTTP 404)" in failed.stderr


def test_nova_force_down_by_uuid_at_2_53_and_unset(clean_services):
    stack = clean_services
    service_id = services_by_host(stack)["compute2"]["id"]
    # clients.md 1.2: PUT /os-services/<uuid> {"forced_down": true}; the full record comes back.
    out = parse_table(nova(stack, "service-force-down", service_id, version="2.53").stdout)
    assert [(r["ID"], r["Host"], r["Forced down"]) for r in out] == [(service_id, "compute2", "True")]
    assert_flags(stack, "compute2", forced_down=True)
    assert_untouched(stack, "compute1", "compute3")

    nova(stack, "service-force-down", "--unset", service_id, version="2.53")
    assert_untouched(stack, *HOSTS)

    # The negotiated version (2.96) takes the same UUID form.
    nova(stack, "service-force-down", service_id)
    assert_flags(stack, "compute2", forced_down=True)
    nova(stack, "service-force-down", "--unset", service_id)
    assert_untouched(stack, *HOSTS)

    missing = str(uuid.uuid4())
    failed = nova(stack, "service-force-down", missing, version="2.53", expect_rc=1)
    assert f"ERROR (NotFound): Service {missing} could not be found. (HTTP 404)" in failed.stderr


def test_nova_disable_with_reason_and_enable_at_2_11_and_2_53(clean_services):
    stack = clean_services
    # 2.11, by hostname (spec 3.3): disable-log-reason, then plain disable clears the reason.
    nova(stack, "service-disable", "--reason", "maintenance window", "compute1", version="2.11")
    assert_flags(stack, "compute1", status="disabled", reason="maintenance window")
    nova(stack, "service-disable", "compute1", version="2.11")
    assert_flags(stack, "compute1", status="disabled", reason=None)
    nova(stack, "service-disable", "--reason", "again", "compute1", version="2.11")
    nova(stack, "service-enable", "compute1", version="2.11")
    assert_flags(stack, "compute1")

    # 2.53, by UUID (spec 3.4 step 6): status disabled without a reason clears any old reason.
    service_id = services_by_host(stack)["compute3"]["id"]
    nova(stack, "service-disable", "--reason", "disk replacement", service_id, version="2.53")
    assert_flags(stack, "compute3", status="disabled", reason="disk replacement")
    nova(stack, "service-disable", service_id, version="2.53")
    assert_flags(stack, "compute3", status="disabled", reason=None)
    nova(stack, "service-disable", "--reason", "again", service_id, version="2.53")
    nova(stack, "service-enable", service_id, version="2.53")
    assert_flags(stack, "compute3")
    assert_untouched(stack, "compute1", "compute2")


def test_nova_delete_stopped_computes_by_integer_id_and_by_uuid(make_stack):
    stack = start_stack_with_computes(make_stack, *HOSTS)
    # Spec 3.5: stop the agent first, otherwise a restart would recreate the row.
    stop_agent(stack, "compute2")
    legacy_id = services_by_host(stack, "2.11")["compute2"]["id"]
    assert isinstance(legacy_id, int)
    nova(stack, "service-delete", str(legacy_id), version="2.11")
    assert sorted(services_by_host(stack)) == ["compute1", "compute3"]

    stop_agent(stack, "compute3")
    service_id = services_by_host(stack)["compute3"]["id"]
    nova(stack, "service-delete", service_id, version="2.53")
    assert sorted(services_by_host(stack)) == ["compute1"]

    failed = nova(stack, "service-delete", service_id, version="2.53", expect_rc=1)
    assert f"ERROR (NotFound): Service {service_id} not found. (HTTP 404)" in failed.stderr
    failed = nova(stack, "service-delete", str(legacy_id), version="2.11", expect_rc=1)
    assert f"ERROR (NotFound): Service {legacy_id} not found. (HTTP 404)" in failed.stderr
    assert_untouched(stack, "compute1")


# -- openstack CLI (OSC 10), clients.md section 2 -------------------------------------------------------

def _long_list(stack: Stack, version: str | None, env: dict | None = None) -> dict[str, dict]:
    rows = openstack_json(stack, "compute", "service", "list", "--long", version=version, env=env)
    return {row["Host"]: row for row in rows}


@pytest.mark.parametrize("version, host", [("2.11", "compute1"), ("2.53", "compute2"), (None, "compute3")],
                         ids=["2.11", "2.53", "negotiated"])
def test_openstack_compute_service_set_down_and_up(clean_services, version, host):
    stack = clean_services
    others = [h for h in HOSTS if h != host]
    # 2.11: PUT /os-services/force-down; 2.53 and negotiated (2.69): GET ?binary&host, then PUT /{uuid}.
    openstack(stack, "compute", "service", "set", "--down", host, COMPUTE, version=version)
    assert_flags(stack, host, forced_down=True)
    assert_untouched(stack, *others)

    rows = _long_list(stack, version)
    assert (rows[host]["Forced Down"], rows[host]["State"]) == (True, "down")
    assert {(rows[h]["Forced Down"], rows[h]["State"]) for h in others} == {(False, "up")}
    if version == "2.11":
        assert isinstance(rows[host]["ID"], int)
    else:
        assert rows[host]["ID"] == services_by_host(stack)[host]["id"]

    openstack(stack, "compute", "service", "set", "--up", host, COMPUTE, version=version)
    assert_untouched(stack, *HOSTS)


def test_openstack_with_the_clouds_yaml_novalite_up_writes(clean_services):
    stack = clean_services
    write_clouds_yaml(StackPaths(stack.root), port=stack.port, auth_strategy="token")
    env = client_env(OS_CLIENT_CONFIG_FILE=str(stack.root / "clouds.yaml"))

    def cloud(*args: str, version: str | None = None):
        return openstack(None, "--os-cloud", "novalite", *args, version=version, env=env)

    # Nova's gate evacuate hook, word for word (clients.md 2.2).
    cloud("compute", "service", "set", "--down", "compute1", COMPUTE, version="2.11")
    assert_flags(stack, "compute1", forced_down=True)

    # Negotiated version: two PUTs by UUID, disable (with reason) first, then force-up.
    cloud("compute", "service", "set", "--disable", "--disable-reason", "fenced", "--up", "compute1", COMPUTE)
    assert_flags(stack, "compute1", status="disabled", reason="fenced")
    rows = {r["Host"]: r for r in openstack_json(None, "--os-cloud", "novalite", "compute", "service", "list",
                                                 "--long", env=env)}
    assert {k: rows["compute1"][k] for k in ("Status", "Disabled Reason", "Forced Down", "State")} == {
        "Status": "disabled", "Disabled Reason": "fenced", "Forced Down": False, "State": "up"}

    cloud("compute", "service", "set", "--enable", "compute1", COMPUTE)
    assert_untouched(stack, *HOSTS)


# -- openstacksdk, clients.md section 3 -----------------------------------------------------------------

@pytest.mark.parametrize("version", ["2.11", "2.53", None], ids=["2.11", "2.53", "negotiated"])
def test_openstacksdk_force_down_enable_disable_and_filtered_list(clean_services, sdk_env, version):
    stack = clean_services
    kwargs = {"compute_api_version": version} if version else {}
    conn = openstacksdk.connect(auth_type="admin_token", auth={"endpoint": stack.endpoint,
                                                               "token": stack.admin_token},
                                load_yaml_config=False, load_envvars=False, **kwargs)
    compute = conn.compute
    by_uuid = version != "2.11"
    try:
        listed = list(compute.services(host="compute2"))
        assert [(s.host, s.binary, s.status, s.state, s.is_forced_down) for s in listed] == [
            ("compute2", COMPUTE, "enabled", "up", False)]
        assert (listed[0].id == services_by_host(stack)["compute2"]["id"]) if by_uuid \
            else isinstance(listed[0].id, int)
        assert len(list(compute.services(binary=COMPUTE))) == 3
        assert list(compute.services(host="nosuchhost")) == []

        result = compute.update_service_forced_down(None, host="compute2", binary=COMPUTE, forced=True)
        assert_flags(stack, "compute2", forced_down=True)
        if by_uuid:  # 2.53+: the full record, after the change (spec 3.4 step 10).
            assert (result.id, result.is_forced_down, result.state) == (listed[0].id, True, "down")
        else:  # below 2.53 the SDK pins 2.11, sends the legacy action and returns None.
            assert result is None
        assert [s.state for s in compute.services(host="compute2")] == ["down"]

        result = compute.update_service_forced_down(None, host="compute2", binary=COMPUTE, forced=False)
        assert_untouched(stack, *HOSTS)
        if by_uuid:
            assert (result.is_forced_down, result.state) == (False, "up")

        disabled = compute.disable_service(None, host="compute2", binary=COMPUTE,
                                           disabled_reason="rack power")
        assert (disabled.status, disabled.disabled_reason) == ("disabled", "rack power")
        assert_flags(stack, "compute2", status="disabled", reason="rack power")

        enabled = compute.enable_service(None, host="compute2", binary=COMPUTE)
        assert enabled.status == "enabled"
        assert_untouched(stack, *HOSTS)
    finally:
        conn.close()


# -- tempest.lib ServicesClient: tempest's requests, response schemas and header echo (6.2-6.4) ----------

def mv(version: str | None) -> tuple[int, int]:
    """A microversion as a comparable pair; no header at all means 2.1 (spec 1.1)."""
    major, minor = (version or "2.1").split(".")
    return int(major), int(minor)


def _assert_ids(services: list[dict], version: str | None) -> None:
    if mv(version) >= (2, 53):
        # Draft-4's FORMAT_CHECKER has no "uuid" checker (clients.md 6.4), so check here.
        assert all(is_canonical_uuid(s["id"]) for s in services), services
    else:
        assert all(isinstance(s["id"], int) for s in services), services


def _tempest_states(client, host: str) -> tuple:
    (service,) = client.list_services(host=host)["services"]
    return service["status"], service["disabled_reason"], service["state"], service.get("forced_down")


@pytest.mark.parametrize("version", [None, "2.1", "2.11", "2.52", "2.53", "2.69"],
                         ids=["no-header", "2.1", "2.11", "2.52", "2.53", "2.69"])
def test_tempest_services_client_validates_every_response(clean_services, version):
    """Tempest validates each body against its schema for ``version`` and, when a version is sent,
    that the response echoes it in X-OpenStack-Nova-API-Version (clients.md 6.2, 6.3)."""
    stack = clean_services
    client = tempest_services_client(stack)
    legacy = mv(version) < (2, 53)
    has_forced = mv(version) >= (2, 11)
    with compute_microversion(version):
        services = client.list_services()["services"]
        assert sorted(s["host"] for s in services) == list(HOSTS)
        assert ("forced_down" in services[0]) == has_forced
        _assert_ids(services, version)
        assert [s["host"] for s in client.list_services(host="compute1")["services"]] == ["compute1"]
        assert len(client.list_services(binary=COMPUTE)["services"]) == 3
        assert client.list_services(host="compute1", binary="xxx")["services"] == []

        if legacy:
            body = client.disable_log_reason(host="compute1", binary=COMPUTE, disabled_reason="maint")
            assert body["service"] == {"host": "compute1", "binary": COMPUTE, "status": "disabled",
                                       "disabled_reason": "maint"}
            assert _tempest_states(client, "compute1")[:3] == ("disabled", "maint", "up")
            body = client.disable_service(host="compute1", binary=COMPUTE)
            assert body["service"] == {"host": "compute1", "binary": COMPUTE, "status": "disabled"}
            assert _tempest_states(client, "compute1")[:2] == ("disabled", None)
            body = client.enable_service(host="compute1", binary=COMPUTE)
            assert body["service"] == {"host": "compute1", "binary": COMPUTE, "status": "enabled"}
            assert _tempest_states(client, "compute1")[:2] == ("enabled", None)
        else:
            # Spec 3.4: the body schema rejects host and binary, so the legacy actions are 400s.
            with pytest.raises(tempest_exc.BadRequest):
                client.enable_service(host="compute1", binary=COMPUTE)

        if has_forced and legacy:
            body = client.update_forced_down(host="compute1", binary=COMPUTE, forced_down=True)
            assert body["service"] == {"host": "compute1", "binary": COMPUTE, "forced_down": True}
            assert _tempest_states(client, "compute1") == ("enabled", None, "down", True)
            body = client.update_forced_down(host="compute1", binary=COMPUTE, forced_down=False)
            assert body["service"]["forced_down"] is False
            assert _tempest_states(client, "compute1") == ("enabled", None, "up", False)
        elif not has_forced:
            # Spec 3.3: below 2.11 the schema has no forced_down, so force-down is a 400.
            with pytest.raises(tempest_exc.BadRequest):
                client.update_forced_down(host="compute1", binary=COMPUTE, forced_down=True)
        else:
            service_id = services_by_host(stack)["compute1"]["id"]
            body = client.update_service(service_id, forced_down=True)["service"]
            assert is_canonical_uuid(body["id"]) and body["id"] == service_id
            assert (body["host"], body["forced_down"], body["state"]) == ("compute1", True, "down")
            body = client.update_service(service_id, status="disabled", disabled_reason="maint")["service"]
            assert (body["status"], body["disabled_reason"]) == ("disabled", "maint")
            assert body["forced_down"] is True
            body = client.update_service(service_id, status="enabled", forced_down=False)["service"]
            assert (body["status"], body["disabled_reason"], body["state"]) == ("enabled", None, "up")
            assert _tempest_states(client, "compute1") == ("enabled", None, "up", False)
            with pytest.raises(tempest_exc.NotFound):
                client.update_service(str(uuid.uuid4()), status="enabled")
    assert_untouched(stack, *HOSTS)


# -- forced_down across an agent restart (spec 4.5) -------------------------------------------------------

def _registrations(stack: Stack, host: str) -> list[tuple[str, str]]:
    """(service id, forced_down) from each "registered" line of the agent's log."""
    return re.findall(r"registered nova-compute on \S+ as (\S+) \(forced_down=(\w+)",
                      stack.log(f"compute-{host}.log"))


def wait_for_heartbeats(stack: Stack, host: str, count: int, **flags) -> None:
    """Wait until updated_at of ``host`` has moved ``count`` times; its flags hold at every look."""
    seen = {assert_flags(stack, host, **flags)["updated_at"]}

    def moved():
        seen.add(assert_flags(stack, host, **flags)["updated_at"])
        return len(seen) > count

    wait_until(moved, timeout=15, interval=0.2, what=f"{count} heartbeats from {host}")


def test_forced_down_survives_an_agent_restart_and_only_the_api_clears_it(make_stack):
    stack = start_stack_with_computes(make_stack, "compute1", "compute2", report_interval=0.5,
                                      service_down_time=10.0)
    before = services_by_host(stack)["compute1"]
    nova(stack, "service-force-down", "compute1", version="2.11")
    assert_flags(stack, "compute1", forced_down=True)

    stop_agent(stack, "compute1")
    stack.start_compute("compute1")
    # It re-registers onto the same record and is told it is forced down.
    wait_until(lambda: len(_registrations(stack, "compute1")) == 2, what="compute1 to register again")
    assert _registrations(stack, "compute1")[1] == (before["id"], "True")

    # Its heartbeats move updated_at but never clear forced_down (spec 4.3, 4.5).
    wait_for_heartbeats(stack, "compute1", 3, forced_down=True)
    assert [(s["id"], s["host"]) for s in stack.services() if s["binary"] == COMPUTE].count(
        (before["id"], "compute1")) == 1
    assert len(services_by_host(stack)) == 2

    # Only the API clears it; the live heartbeats then keep it up.
    nova(stack, "service-force-down", "--unset", "compute1", version="2.11")
    wait_for_heartbeats(stack, "compute1", 2)
    assert_untouched(stack, "compute1", "compute2")
    assert "is gone" not in stack.log("compute-compute1.log")
