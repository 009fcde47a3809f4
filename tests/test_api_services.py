"""The os-services API (spec section 3): list, legacy actions, the 2.53 PUT, DELETE, force-up guard."""

from __future__ import annotations

import pytest

from novalite.db import api as db
from tests.api_client import PROJECT, Api, assert_fault, parse_updated_at

LIST_KEYS = ["binary", "host", "id", "zone", "status", "state", "updated_at", "disabled_reason"]
BOOLEAN_ENUM = ("[True, 'True', 'TRUE', 'true', '1', 'ON', 'On', 'on', 'YES', 'Yes', 'yes', False, 'False', "
                "'FALSE', 'false', '0', 'OFF', 'Off', 'off', 'NO', 'No', 'no']")
TRUE_STRINGS = ["True", "TRUE", "true", "1", "ON", "On", "on", "YES", "Yes", "yes"]
FALSE_STRINGS = ["False", "FALSE", "false", "0", "OFF", "Off", "off", "NO", "No", "no"]
MISSING_UUID = "c4726392-27de-4ff9-b2e0-5aa1d08a520f"
FORCE_UP_REFUSED = (
    "Unable to force up host {} as `done` evacuation migration records remain associated with the host. "
    "Ensure the compute service has been restarted, allowing these records to move to `completed` before "
    "retrying this request."
)
NO_UPDATES = "No updates were requested. Fields 'status' or 'forced_down' should be specified."
HOSTING_INSTANCES = ("Unable to delete compute service that is hosting instances. "
                     "Migrate or delete the instances first.")
IN_PROGRESS_MIGRATIONS = ("Unable to delete compute service that has in-progress migrations. "
                          "Complete the migrations or delete the instances first.")
ACTION_EXTRAS = (("enable", {}), ("disable", {}), ("disable-log-reason", {"disabled_reason": "x"}),
                 ("force-down", {"forced_down": True}))
FINISHED = ["confirmed", "reverted", "error", "failed", "completed", "cancelled", "done"]


def not_supported(binary: str) -> str:
    return f"Updating a {binary} service is not supported. Only nova-compute services can be updated."


@pytest.fixture
def api(tmp_path) -> Api:
    return Api(tmp_path)


def legacy(api: Api, action: str, body, version: str = "2.11"):
    return api.put(f"/v2.1/os-services/{action}", body, version=version)


def update(api: Api, service_id: str, body, version: str = "2.53"):
    return api.put(f"/v2.1/os-services/{service_id}", body, version=version)


def listed(api: Api, host: str) -> dict:
    (found,) = [s for s in api.services() if s["host"] == host]
    return found


# == 3.2 GET /os-services ========================================================================

def test_empty_list(api):
    # spec 3.2: the list can be empty
    result = api.get("/v2.1/os-services")
    assert (result.status_code, result.json) == (200, {"services": []})
    assert result.headers["Content-Type"] == "application/json"


def test_list_shape_at_21_has_eight_keys_in_order_and_integer_ids(api):
    # spec 3.2: binary, host, id, zone, status, state, updated_at, disabled_reason; id is the DB integer
    api.compute("h1")
    (service,) = api.services(version="2.1")
    assert list(service) == LIST_KEYS
    row = api.rows()[0]
    assert service == {"binary": "nova-compute", "host": "h1", "id": row["id"], "zone": "nova",
                       "status": "enabled", "state": "up", "updated_at": None, "disabled_reason": None}


@pytest.mark.parametrize("version", ["2.11", "2.52"])
def test_list_adds_forced_down_from_211(api, version):
    # spec 3.2: forced_down (a bool) only at 2.11 and later; ids still integers before 2.53
    api.compute("h1")
    assert "forced_down" not in api.services(version="2.10")[0]
    (service,) = api.services(version=version)
    assert list(service) == [*LIST_KEYS, "forced_down"]
    assert service["forced_down"] is False
    assert isinstance(service["id"], int)


@pytest.mark.parametrize("version", ["2.53", "2.69", "2.75", "latest"])
def test_list_ids_are_uuids_from_253(api, version):
    # spec 3.2: id is the service UUID string at 2.53 and later
    created = api.compute("h1")
    (service,) = api.services(version=version)
    assert service["id"] == created["id"] == api.rows()[0]["uuid"]
    assert list(service) == [*LIST_KEYS, "forced_down"]


def test_list_is_in_db_order_and_hides_the_api_services_and_deleted_rows(api):
    # spec 3.2: nova-osapi_compute and nova-metadata never listed; soft-deleted rows not listed; DB order
    api.compute("c1")
    api.add_service("api1", "nova-osapi_compute", "osapi_compute")
    api.add_service("s1", "nova-scheduler", "scheduler")
    api.add_service("api1", "nova-metadata", "metadata")
    gone = api.compute("c2")
    api.add_service("k1", "nova-conductor", "conductor")
    assert api.delete(f"/v2.1/os-services/{gone['id']}", version="2.53").status_code == 204
    services = api.services()
    assert [(s["host"], s["binary"]) for s in services] == [
        ("c1", "nova-compute"), ("s1", "nova-scheduler"), ("k1", "nova-conductor")]


def test_zone_is_default_az_for_computes_and_internal_for_others(tmp_path):
    # spec 3.2: compute → [DEFAULT]default_availability_zone ("nova"),
    # others → [DEFAULT]internal_service_availability_zone ("internal")
    api = Api(tmp_path / "defaults")
    api.compute("c1")
    api.add_service("s1", "nova-scheduler", "scheduler")
    assert [s["zone"] for s in api.services()] == ["nova", "internal"]
    api = Api(tmp_path / "custom", env={"NOVALITE_DEFAULT_AVAILABILITY_ZONE": "az1",
                                        "NOVALITE_INTERNAL_SERVICE_AVAILABILITY_ZONE": "infra"})
    api.compute("c1")
    api.add_service("s1", "nova-scheduler", "scheduler")
    assert [s["zone"] for s in api.services()] == ["az1", "infra"]


def test_filters_by_host_and_binary_exactly_and_case_sensitively(api):
    # spec 3.2: exact, case-sensitive equality on host and binary
    api.compute("h1")
    api.compute("h10")
    api.add_service("h1", "nova-scheduler", "scheduler")
    hosts = lambda qs: [(s["host"], s["binary"]) for s in api.services(query_string=qs)]  # noqa: E731
    assert hosts("host=h1") == [("h1", "nova-compute"), ("h1", "nova-scheduler")]
    assert hosts("host=H1") == []
    assert hosts("host=h") == []
    assert hosts("binary=nova-scheduler") == [("h1", "nova-scheduler")]
    assert hosts("binary=nova-compute&host=h10") == [("h10", "nova-compute")]
    assert hosts("binary=NOVA-COMPUTE") == []


def test_repeated_filter_last_value_wins(api):
    # spec 3.2: host and binary are lists; the last value wins
    api.compute("h1")
    api.compute("h2")
    assert [s["host"] for s in api.services(query_string="host=h1&host=h2")] == ["h2"]
    assert [s["host"] for s in api.services(query_string="host=h2&host=h1")] == ["h1"]
    assert [s["host"] for s in api.services(query_string="host=h2&host=")] == ["h1", "h2"]


def test_empty_filter_means_no_filter(api):
    # spec 3.2: ?host= means no filter
    api.compute("h1")
    api.compute("h2")
    assert len(api.services(query_string="host=&binary=")) == 2
    assert len(api.services(query_string="host")) == 2


@pytest.mark.parametrize("version", ["2.1", "2.53", "2.74"])
def test_unknown_query_parameters_are_stripped_before_275(api, version):
    # spec 3.2: 2.1–2.74 strip unknown parameters silently; there are no status/state/zone filters
    api.compute("h1")
    api.compute("h2")
    services = api.services(version=version, query_string="status=disabled&state=down&zone=x&foo=1")
    assert [s["host"] for s in services] == ["h1", "h2"]


@pytest.mark.parametrize("version", ["2.75", "2.102", "latest"])
def test_unknown_query_parameters_are_400_from_275(api, version):
    # spec 3.2: 2.75 and later → 400 "Additional properties are not allowed (... unexpected)", sorted
    api.compute("h1")
    with api.unchanged():
        result = api.get("/v2.1/os-services", version=version, query_string="foo=1&host=h1")
        assert_fault(result, 400, "Additional properties are not allowed ('foo' was unexpected)")
        result = api.get("/v2.1/os-services", version=version, query_string="zone=x&b=2&a=1")
        assert_fault(result, 400, "Additional properties are not allowed ('a', 'b', 'zone' were unexpected)")
    assert len(api.services(version=version, query_string="host=h1&binary=nova-compute")) == 1


@pytest.mark.parametrize("version", ["2.1", "2.75"])
@pytest.mark.parametrize("query", ["host=%ff", "host=\xff", "%c3%28=1", "binary=a%80b"])
def test_query_string_that_is_not_utf8_is_400(api, version, query):
    # spec 3.2: a query string that is not valid UTF-8 → 400 "Query string is not UTF-8 encoded"
    raw = api.raw("GET", "/v2.1/os-services", query=query,
                  headers={"X-Auth-Token": api.token, "X-OpenStack-Nova-API-Version": version})
    assert_fault(raw, 400, "Query string is not UTF-8 encoded")


def test_utf8_query_values_are_decoded(api):
    # spec 3.2: percent-encoded UTF-8 is fine (and simply matches nothing here)
    api.compute("h1")
    raw = api.raw("GET", "/v2.1/os-services", query="host=%C3%BC", headers={"X-Auth-Token": api.token})
    assert (raw.status_code, raw.json()) == (200, {"services": []})


def test_status_reflects_the_disabled_flag_and_disabled_reason(api):
    # spec 3.2: status "enabled"/"disabled" from the disabled flag; disabled_reason string or null
    api.compute("h1")
    assert legacy(api, "disable-log-reason", {"host": "h1", "binary": "nova-compute",
                                              "disabled_reason": "maintenance"}).status_code == 200
    service = listed(api, "h1")
    assert (service["status"], service["disabled_reason"], service["state"]) == (
        "disabled", "maintenance", "up")


def test_updated_at_is_null_until_written_then_moves_on_heartbeat_and_admin_change(api):
    # spec 3.2: YYYY-MM-DDTHH:MM:SS.ffffff, no timezone; null if never updated;
    # it moves on every heartbeat and every admin change
    created = api.compute("h1")
    assert listed(api, "h1")["updated_at"] is None
    assert api.heartbeat(created["id"]).status_code == 204
    first = listed(api, "h1")["updated_at"]
    assert len(first) == 26 and first[10] == "T" and first[19] == "."
    parse_updated_at(first)
    assert api.heartbeat(created["id"]).status_code == 204
    second = listed(api, "h1")["updated_at"]
    assert parse_updated_at(second) >= parse_updated_at(first)
    assert update(api, created["id"], {"status": "disabled"}).status_code == 200
    assert parse_updated_at(listed(api, "h1")["updated_at"]) >= parse_updated_at(second)
    rows = api.rows()
    assert rows[0]["report_count"] == 2


# == 3.3 legacy PUT actions (2.1–2.52) ===========================================================

def test_enable_clears_disabled_and_reason_and_answers_host_binary_status(api):
    # spec 3.3: enable → disabled=false, reason=null; {"service": {"host", "binary", "status": "enabled"}}
    api.compute("h1")
    legacy(api, "disable-log-reason", {"host": "h1", "binary": "nova-compute", "disabled_reason": "r"})
    result = legacy(api, "enable", {"host": "h1", "binary": "nova-compute"}, version="2.1")
    assert result.status_code == 200
    assert result.json == {"service": {"host": "h1", "binary": "nova-compute", "status": "enabled"}}
    assert list(result.json["service"]) == ["host", "binary", "status"]
    assert (listed(api, "h1")["status"], listed(api, "h1")["disabled_reason"]) == ("enabled", None)


def test_disable_ignores_a_reason_and_clears_the_old_one(api):
    # spec 3.3: disable → disabled=true, disabled_reason=null; a disabled_reason in the body is ignored
    api.compute("h1")
    legacy(api, "disable-log-reason", {"host": "h1", "binary": "nova-compute", "disabled_reason": "old"})
    result = legacy(api, "disable", {"host": "h1", "binary": "nova-compute", "disabled_reason": "new"})
    assert result.status_code == 200
    assert result.json == {"service": {"host": "h1", "binary": "nova-compute", "status": "disabled"}}
    service = listed(api, "h1")
    assert (service["status"], service["disabled_reason"]) == ("disabled", None)


def test_disable_log_reason_answers_with_the_reason(api):
    # spec 3.3: {"service": {"host", "binary", "status": "disabled", "disabled_reason": r}} in that order
    api.compute("h1")
    result = legacy(api, "disable-log-reason",
                    {"host": "h1", "binary": "nova-compute", "disabled_reason": "broken fan"}, version="2.1")
    assert result.status_code == 200
    assert list(result.json["service"]) == ["host", "binary", "status", "disabled_reason"]
    assert result.json == {"service": {"host": "h1", "binary": "nova-compute", "status": "disabled",
                                       "disabled_reason": "broken fan"}}
    assert listed(api, "h1")["disabled_reason"] == "broken fan"


def test_disable_log_reason_without_reason_is_400(api):
    # spec 3.3: "Missing disabled reason field"
    api.compute("h1")
    with api.unchanged():
        assert_fault(legacy(api, "disable-log-reason", {"host": "h1", "binary": "nova-compute"}),
                     400, "Missing disabled reason field")


def test_force_down_sample_at_211(api):
    # spec 3.3 sample: {"host": "host1", "binary": "nova-compute", "forced_down": true}
    api.compute("host1")
    result = legacy(api, "force-down", {"host": "host1", "binary": "nova-compute", "forced_down": True})
    assert result.status_code == 200
    assert result.json == {"service": {"binary": "nova-compute", "host": "host1", "forced_down": True}}
    assert list(result.json["service"]) == ["host", "binary", "forced_down"]
    service = listed(api, "host1")
    assert (service["forced_down"], service["state"]) == (True, "down")


@pytest.mark.parametrize("value", [True, *TRUE_STRINGS])
def test_force_down_parses_true_strings_leniently_and_answers_a_boolean(api, value):
    # spec 3.3: Nova boolean strings; forced_down is always a JSON boolean in the response
    api.compute("h1")
    result = legacy(api, "force-down", {"host": "h1", "binary": "nova-compute", "forced_down": value})
    assert result.json["service"]["forced_down"] is True
    assert listed(api, "h1")["forced_down"] is True


@pytest.mark.parametrize("value", [False, *FALSE_STRINGS])
def test_force_down_parses_false_strings(api, value):
    # spec 3.3
    api.compute("h1")
    legacy(api, "force-down", {"host": "h1", "binary": "nova-compute", "forced_down": True})
    result = legacy(api, "force-down", {"host": "h1", "binary": "nova-compute", "forced_down": value},
                    version="2.52")
    assert result.status_code == 200
    assert result.json["service"]["forced_down"] is False
    assert listed(api, "h1")["forced_down"] is False


def test_force_down_without_forced_down_is_400(api):
    # spec 3.3: "Missing forced_down field"
    api.compute("h1")
    with api.unchanged():
        assert_fault(legacy(api, "force-down", {"host": "h1", "binary": "nova-compute"}),
                     400, "Missing forced_down field")


def test_forced_down_is_allowed_and_ignored_in_other_actions(api):
    # spec 3.3: forced_down is allowed in the body of any action and ignored except by force-down
    api.compute("h1")
    for action in ("disable", "enable"):
        result = legacy(api, action, {"host": "h1", "binary": "nova-compute", "forced_down": True})
        assert result.status_code == 200
        assert "forced_down" not in result.json["service"]
    assert listed(api, "h1")["forced_down"] is False


@pytest.mark.parametrize(("body", "message"), [
    ({"binary": "nova-compute"}, "'host' is a required property"),
    ({"host": "h1"}, "'binary' is a required property"),
    ({"host": "h1", "binary": "nova-compute", "foo": 1},
     "Additional properties are not allowed ('foo' was unexpected)"),
    ({"host": "a b", "binary": "nova-compute"},
     "Invalid input for field/attribute host. Value: a b. 'a b' does not match '^[a-zA-Z0-9-._]*$'"),
    ({"host": "", "binary": "nova-compute"},
     "Invalid input for field/attribute host. Value: . '' should be non-empty"),
    ({"host": "h" * 256, "binary": "nova-compute"},
     f"Invalid input for field/attribute host. Value: {'h' * 256}. '{'h' * 256}' is too long"),
    ({"host": 5, "binary": "nova-compute"},
     "Invalid input for field/attribute host. Value: 5. 5 is not of type 'string'"),
    ({"host": "h1", "binary": ""},
     "Invalid input for field/attribute binary. Value: . '' should be non-empty"),
    ({"host": "h1", "binary": "b" * 256},
     f"Invalid input for field/attribute binary. Value: {'b' * 256}. '{'b' * 256}' is too long"),
    ({"host": "h1", "binary": "nova-compute", "disabled_reason": ""},
     "Invalid input for field/attribute disabled_reason. Value: . '' should be non-empty"),
    ({"host": "h1", "binary": "nova-compute", "disabled_reason": "r" * 256},
     f"Invalid input for field/attribute disabled_reason. Value: {'r' * 256}. '{'r' * 256}' is too long"),
    ({"host": "h1", "binary": "nova-compute", "forced_down": "foo"},
     f"Invalid input for field/attribute forced_down. Value: foo. 'foo' is not one of {BOOLEAN_ENUM}"),
    ({"host": "h1", "binary": "nova-compute", "forced_down": 1},
     "Invalid input for field/attribute forced_down. Value: 1. 1 is not of type 'boolean', 'string'"),
    ({"host": "h1", "binary": "nova-compute", "forced_down": 0},
     "Invalid input for field/attribute forced_down. Value: 0. 0 is not of type 'boolean', 'string'"),
    ([], "[] is not of type 'object'"),
    # spec 3.7: only the first error, in the order the schema's keywords are written
    ({"binary": "", "host": "a b"},
     "Invalid input for field/attribute host. Value: a b. 'a b' does not match '^[a-zA-Z0-9-._]*$'"),
    ({"foo": 1}, "'host' is a required property"),
])
def test_legacy_body_schema_messages(api, body, message):
    # spec 3.3 body schema; spec 3.7 message shapes
    api.compute("h1")
    with api.unchanged():
        assert_fault(legacy(api, "force-down", body), 400, message)


def test_forced_down_key_is_refused_before_211(api):
    # spec 3.3: the 2.1–2.10 schema has no forced_down
    api.compute("h1")
    with api.unchanged():
        assert_fault(legacy(api, "disable", {"host": "h1", "binary": "nova-compute", "forced_down": True},
                            version="2.10"),
                     400, "Additional properties are not allowed ('forced_down' was unexpected)")


def test_force_down_is_an_unknown_action_before_211(api):
    # spec 3.3 / 3.1: force-down exists only from 2.11 → 404 "Unknown action" at 2.1–2.10
    api.compute("h1")
    with api.unchanged():
        assert_fault(legacy(api, "force-down", {"host": "h1", "binary": "nova-compute"}, version="2.10"),
                     404, "Unknown action")


@pytest.mark.parametrize("action", ["frobnicate", MISSING_UUID, "1", "ENABLE"])
def test_unknown_action_is_404_after_the_schema_check(api, action):
    # spec 3.3: schema (400) first, then the action lookup → 404 "Unknown action" (a UUID too, below 2.53)
    api.compute("h1")
    with api.unchanged():
        assert_fault(legacy(api, action, {"host": "h1", "binary": "nova-compute"}, version="2.52"),
                     404, "Unknown action")
        assert_fault(legacy(api, action, {"host": "h1"}, version="2.52"),
                     400, "'binary' is a required property")


def test_legacy_actions_refuse_other_binaries(api):
    # spec 3.3 step 5: "Updating a <binary> service is not supported. Only nova-compute ..."
    api.add_service("s1", "nova-scheduler", "scheduler")
    with api.unchanged():
        for action, extra in ACTION_EXTRAS:
            body = {"host": "s1", "binary": "nova-scheduler", **extra}
            assert_fault(legacy(api, action, body), 400, not_supported("nova-scheduler"))


def test_missing_field_checks_come_before_the_binary_check(api):
    # spec 3.3: the action runs (step 4) before the binary check (step 5) and the host lookup (step 6)
    with api.unchanged():
        assert_fault(legacy(api, "disable-log-reason", {"host": "nowhere", "binary": "nova-scheduler"}),
                     400, "Missing disabled reason field")
        assert_fault(legacy(api, "force-down", {"host": "nowhere", "binary": "nova-scheduler"}),
                     400, "Missing forced_down field")


def test_binary_check_comes_before_the_host_lookup(api):
    # spec 3.3: step 5 before step 6
    with api.unchanged():
        assert_fault(legacy(api, "enable", {"host": "nowhere", "binary": "nova-conductor"}),
                     400, not_supported("nova-conductor"))


def test_unmapped_host_is_404(api):
    # spec 3.3 step 6: "Host '<host>' is not mapped to any cell"
    api.compute("h1")
    with api.unchanged():
        for action, extra in ACTION_EXTRAS:
            body = {"host": "nowhere", "binary": "nova-compute", **extra}
            assert_fault(legacy(api, action, body), 404, "Host 'nowhere' is not mapped to any cell")


def test_mapped_host_without_a_compute_row_is_404(api):
    # spec 3.3 step 6: "Could not find binary <binary> on host <host>."
    api.add_service("s1", "nova-scheduler", "scheduler")
    with api.unchanged():
        assert_fault(legacy(api, "disable", {"host": "s1", "binary": "nova-compute"}),
                     404, "Could not find binary nova-compute on host s1.")


def test_legacy_actions_are_gone_from_253(api):
    # spec 3.1: enable/disable/... only 2.1–2.52; at 2.53 the path segment must be a UUID
    api.compute("h1")
    with api.unchanged():
        for action in ("enable", "disable", "disable-log-reason", "force-down"):
            assert_fault(update(api, action, {}), 400, f"Invalid uuid {action}")


# == 3.4 PUT /os-services/{service_id} (2.53+) ===================================================

def test_253_sample_force_down(api):
    # spec 3.4 sample: {"forced_down": true} → the full record, state computed after the save
    created = api.compute("host1")
    update(api, created["id"], {"status": "disabled", "disabled_reason": "test2"})
    result = update(api, created["id"], {"forced_down": True})
    assert result.status_code == 200
    service = result.json["service"]
    assert list(service) == [*LIST_KEYS, "forced_down"]
    updated_at = service.pop("updated_at")
    assert service == {"binary": "nova-compute", "host": "host1", "id": created["id"], "zone": "nova",
                       "status": "disabled", "state": "down", "disabled_reason": "test2", "forced_down": True}
    parse_updated_at(updated_at)  # Tempest: an ISO-8601 string, never null
    assert listed(api, "host1") == result.json["service"]


def test_253_status_disabled_with_and_without_reason(api):
    # spec 3.4 step 6: "disabled" sets disabled_reason to the body value, or null if absent (clearing it)
    created = api.compute("h1")
    result = update(api, created["id"], {"status": "disabled", "disabled_reason": "x"})
    assert (result.json["service"]["status"], result.json["service"]["disabled_reason"]) == ("disabled", "x")
    result = update(api, created["id"], {"status": "disabled"})
    assert (result.json["service"]["status"], result.json["service"]["disabled_reason"]) == ("disabled", None)
    assert listed(api, "h1")["disabled_reason"] is None


def test_253_status_enabled_clears_the_reason(api):
    # spec 3.4 step 6
    created = api.compute("h1")
    update(api, created["id"], {"status": "disabled", "disabled_reason": "x"})
    result = update(api, created["id"], {"status": "enabled"})
    assert (result.json["service"]["status"], result.json["service"]["disabled_reason"]) == ("enabled", None)


def test_253_enabled_with_a_reason_is_400(api):
    # spec 3.4 step 6: "Specifying 'disabled_reason' with status 'enabled' is invalid."
    created = api.compute("h1")
    with api.unchanged():
        assert_fault(update(api, created["id"], {"status": "enabled", "disabled_reason": "x"}),
                     400, "Specifying 'disabled_reason' with status 'enabled' is invalid.")
        # step 6 comes before step 7: the guard is not what answers
        api.add_migration(source="h1", status="done")
        assert_fault(update(api, created["id"], {"status": "enabled", "disabled_reason": "x",
                                                 "forced_down": False}),
                     400, "Specifying 'disabled_reason' with status 'enabled' is invalid.")


def test_253_status_and_forced_down_together(api):
    # spec 3.4 step 7: forced_down independently of status; both may be sent
    created = api.compute("h1")
    result = update(api, created["id"], {"status": "disabled", "disabled_reason": "r", "forced_down": "yes"})
    service = result.json["service"]
    assert (service["status"], service["disabled_reason"], service["forced_down"], service["state"]) == (
        "disabled", "r", True, "down")
    result = update(api, created["id"], {"status": "enabled", "forced_down": False})
    service = result.json["service"]
    assert (service["status"], service["disabled_reason"], service["forced_down"], service["state"]) == (
        "enabled", None, False, "up")


@pytest.mark.parametrize("body", [{}, {"disabled_reason": "x"}])
def test_253_nothing_to_update_is_400(api, body):
    # spec 3.4 step 8: {} and a body with only disabled_reason
    created = api.compute("h1")
    with api.unchanged():
        assert_fault(update(api, created["id"], body), 400, NO_UPDATES)


def test_253_reason_without_status_is_ignored_when_forced_down_is_sent(api):
    # spec 3.4 step 8: {"forced_down": true, "disabled_reason": "x"} → 200 and the reason is not saved
    created = api.compute("h1")
    result = update(api, created["id"], {"forced_down": True, "disabled_reason": "x"})
    assert result.status_code == 200
    assert (result.json["service"]["disabled_reason"], result.json["service"]["status"]) == (None, "enabled")
    assert listed(api, "h1")["disabled_reason"] is None


def test_253_assigning_the_current_value_still_counts(api):
    # spec 3.4 step 8: {"status": "enabled"} on an enabled service → 200 (and the row is written)
    created = api.compute("h1")
    assert api.rows()[0]["updated_at"] is None
    result = update(api, created["id"], {"status": "enabled"})
    assert result.status_code == 200
    assert result.json["service"]["updated_at"] is not None
    assert api.rows()[0]["updated_at"] is not None


@pytest.mark.parametrize(("value", "expected"), [(v, True) for v in (True, *TRUE_STRINGS)]
                         + [(v, False) for v in (False, *FALSE_STRINGS)])
def test_253_forced_down_accepts_nova_booleans(api, value, expected):
    # spec 3.4: forced_down is a Nova boolean
    created = api.compute("h1")
    result = update(api, created["id"], {"forced_down": value})
    assert result.status_code == 200
    assert result.json["service"]["forced_down"] is expected


@pytest.mark.parametrize(("body", "message"), [
    ({"host": "h1", "binary": "nova-compute"},
     "Additional properties are not allowed ('binary', 'host' were unexpected)"),
    ({"status": "foo"},
     "Invalid input for field/attribute status. Value: foo. 'foo' is not one of ['enabled', 'disabled']"),
    ({"status": "Enabled"},
     "Invalid input for field/attribute status. Value: Enabled. "
     "'Enabled' is not one of ['enabled', 'disabled']"),
    ({"status": "disabled", "disabled_reason": ""},
     "Invalid input for field/attribute disabled_reason. Value: . '' should be non-empty"),
    ({"status": "disabled", "disabled_reason": "r" * 256},
     f"Invalid input for field/attribute disabled_reason. Value: {'r' * 256}. '{'r' * 256}' is too long"),
    ({"forced_down": "foo"},
     f"Invalid input for field/attribute forced_down. Value: foo. 'foo' is not one of {BOOLEAN_ENUM}"),
    ({"forced_down": 1},
     "Invalid input for field/attribute forced_down. Value: 1. 1 is not of type 'boolean', 'string'"),
    ({"forced_down": None},
     "Invalid input for field/attribute forced_down. Value: None. None is not of type 'boolean', 'string'"),
    ("enabled", "'enabled' is not of type 'object'"),
])
def test_253_body_schema_messages(api, body, message):
    # spec 3.4 body schema; spec 3.7 message shapes
    created = api.compute("h1")
    with api.unchanged():
        assert_fault(update(api, created["id"], body), 400, message)


def test_253_schema_check_comes_before_the_uuid_check(api):
    # spec 3.4: step 1 (schema) before step 2 (uuid)
    with api.unchanged():
        assert_fault(update(api, "disable", {"foo": 1}), 400,
                     "Additional properties are not allowed ('foo' was unexpected)")


@pytest.mark.parametrize("service_id", ["disable", "1", "42", "c4726392-27de-4ff9-b2e0", "not-a-uuid",
                                        MISSING_UUID + "0"])
def test_253_service_id_must_look_like_a_uuid(api, service_id):
    # spec 3.4 step 2: "Invalid uuid <id>", for action names and integers too
    api.compute("h1")
    with api.unchanged():
        assert_fault(update(api, service_id, {"status": "enabled"}), 400, f"Invalid uuid {service_id}")


@pytest.mark.parametrize("service_id", [
    MISSING_UUID, MISSING_UUID.upper(), MISSING_UUID.replace("-", ""), "{" + MISSING_UUID + "}",
    "urn:uuid:" + MISSING_UUID,
])
def test_253_oslo_uuid_forms_pass_the_check_and_unknown_ones_are_404(api, service_id):
    # spec 3.4 steps 2 and 4: oslo's uuid-like forms pass; not found → "Service <id> could not be found."
    api.compute("h1")
    with api.unchanged():
        assert_fault(update(api, service_id, {"status": "enabled"}), 404,
                     f"Service {service_id} could not be found.")


def test_253_other_binaries_cannot_be_updated(api):
    # spec 3.4 step 5 (before step 6's checks)
    scheduler = api.add_service("s1", "nova-scheduler", "scheduler")
    with api.unchanged():
        for body in ({"status": "disabled"}, {"forced_down": True},
                     {"status": "enabled", "disabled_reason": "x"}, {}):
            assert_fault(update(api, scheduler["uuid"], body), 400, not_supported("nova-scheduler"))


def test_253_put_works_with_the_project_id_prefix(api):
    # spec 3.1: the routes are identical with or without /{project_id}
    created = api.compute("h1")
    result = api.put(f"/v2.1/{PROJECT}/os-services/{created['id']}", {"status": "disabled"}, version="2.53")
    assert result.json["service"]["status"] == "disabled"


# == 3.5 DELETE /os-services/{id} ================================================================

def test_delete_by_uuid_from_253_answers_204_with_an_empty_body(api):
    # spec 3.5: 204 with an empty body; the row is soft-deleted and no longer listed
    created = api.compute("h1")
    api.compute("h2")
    result = api.delete(f"/v2.1/os-services/{created['id']}", version="2.53")
    assert (result.status_code, result.content) == (204, b"")
    assert [s["host"] for s in api.services()] == ["h2"]
    row = api.rows()[0]
    assert row["uuid"] == created["id"] and row["deleted"] != 0 and row["deleted_at"] is not None


def test_delete_by_integer_id_before_253(api):
    # spec 3.5: before 2.53 the id is the DB integer
    api.compute("h1")
    row_id = api.rows()[0]["id"]
    result = api.delete(f"/v2.1/os-services/{row_id}", version="2.52")
    assert (result.status_code, result.content) == (204, b"")
    assert api.services() == []


def test_delete_id_checks(api):
    # spec 3.5 step 2: uuid from 2.53, integer before
    created = api.compute("h1")
    row_id = api.rows()[0]["id"]
    with api.unchanged():
        assert_fault(api.delete(f"/v2.1/os-services/{row_id}", version="2.53"), 400, f"Invalid uuid {row_id}")
        assert_fault(api.delete("/v2.1/os-services/abc", version="latest"), 400, "Invalid uuid abc")
        assert_fault(api.delete(f"/v2.1/os-services/{created['id']}", version="2.52"),
                     400, "Invalid input received: id must be an integer")
        assert_fault(api.delete("/v2.1/os-services/1.5"),
                     400, "Invalid input received: id must be an integer")


def test_delete_unknown_service_is_404_with_its_own_wording(api):
    # spec 3.5 step 3: "Service <id> not found." (not PUT's "could not be found")
    api.compute("h1")
    with api.unchanged():
        assert_fault(api.delete("/v2.1/os-services/999"), 404, "Service 999 not found.")
        assert_fault(api.delete(f"/v2.1/os-services/{MISSING_UUID}", version="2.53"),
                     404, f"Service {MISSING_UUID} not found.")


def test_deleted_service_is_404_the_second_time(api):
    # spec 3.2 / 3.5: soft-deleted rows are not found again
    created = api.compute("h1")
    assert api.delete(f"/v2.1/os-services/{created['id']}", version="2.53").status_code == 204
    with api.unchanged():
        assert_fault(api.delete(f"/v2.1/os-services/{created['id']}", version="2.53"),
                     404, f"Service {created['id']} not found.")
        assert_fault(update(api, created["id"], {"status": "enabled"}),
                     404, f"Service {created['id']} could not be found.")


def test_delete_compute_hosting_instances_is_409(api):
    # spec 3.5 step 4: any non-deleted instance on the host → 409 conflictingRequest
    created = api.compute("h1")
    api.add_instance("h1")
    with api.unchanged():
        assert_fault(api.delete(f"/v2.1/os-services/{created['id']}", version="2.53"), 409, HOSTING_INSTANCES)
        api.add_migration(source="h1", status="running", migration_type="migration")
        # instances are checked before migrations
        assert_fault(api.delete(f"/v2.1/os-services/{created['id']}", version="2.53"), 409, HOSTING_INSTANCES)


def test_deleted_instances_do_not_block_delete(api):
    # spec 3.5 step 4: only non-deleted instances count
    created = api.compute("h1")
    api.add_instance("h1", deleted=True)
    api.add_instance("h2")
    assert api.delete(f"/v2.1/os-services/{created['id']}", version="2.53").status_code == 204


@pytest.mark.parametrize("status", ["queued", "running", "pre-migrating", "post-migrating", "accepted"])
@pytest.mark.parametrize("side", ["source", "dest"])
def test_delete_compute_with_in_progress_migrations_is_409(api, status, side):
    # spec 3.5 step 4: in-progress migration with the host as source or destination → 409
    created = api.compute("h1")
    source, dest = ("h1", "h9") if side == "source" else ("h9", "h1")
    api.add_migration(source=source, dest=dest, status=status, migration_type="migration")
    with api.unchanged():
        assert_fault(api.delete(f"/v2.1/os-services/{created['id']}", version="2.53"), 409,
                     IN_PROGRESS_MIGRATIONS)


@pytest.mark.parametrize("status", FINISHED)
def test_finished_migrations_do_not_block_delete(api, status):
    # spec 3.5 step 4: confirmed, reverted, error, failed, completed, cancelled, done are not in progress
    created = api.compute("h1")
    api.add_migration(source="h1", status=status)
    api.add_migration(source="h9", dest="h1", status=status, migration_type="migration")
    assert api.delete(f"/v2.1/os-services/{created['id']}", version="2.53").status_code == 204


def test_non_compute_services_can_be_deleted(api):
    # spec 3.5: scheduler, conductor … can be deleted; instances on the host do not matter for them
    scheduler = api.add_service("s1", "nova-scheduler", "scheduler")
    conductor = api.add_service("k1", "nova-conductor", "conductor")
    api.add_instance("s1")
    api.add_migration(source="s1", status="running", migration_type="migration")
    assert api.delete(f"/v2.1/os-services/{scheduler['uuid']}", version="2.53").status_code == 204
    assert api.delete(f"/v2.1/os-services/{conductor['id']}", version="2.1").status_code == 204
    assert api.services() == []


# == 3.6 guard when a compute is forced back up ==================================================

def test_legacy_force_up_refused_while_done_evacuations_remain(api):
    # spec 3.6: 400 (not 409), with literal backticks around `done` and `completed`
    api.compute("h1")
    legacy(api, "force-down", {"host": "h1", "binary": "nova-compute", "forced_down": True})
    api.add_migration(source="h1", status="done")
    with api.unchanged():
        for value in (False, "false", "0", "no"):
            body = {"host": "h1", "binary": "nova-compute", "forced_down": value}
            assert_fault(legacy(api, "force-down", body), 400, FORCE_UP_REFUSED.format("h1"))


def test_253_force_up_refused_while_done_evacuations_remain(api):
    # spec 3.6 / 3.4 step 7: the guard runs even if the flag is already false
    created = api.compute("h1")
    api.add_migration(source="h1", status="done")
    with api.unchanged():
        assert_fault(update(api, created["id"], {"forced_down": False}), 400, FORCE_UP_REFUSED.format("h1"))
        assert_fault(update(api, created["id"], {"status": "disabled", "forced_down": "off"}),
                     400, FORCE_UP_REFUSED.format("h1"))
    # forcing down is never guarded
    assert update(api, created["id"], {"forced_down": True}).status_code == 200


def test_legacy_guard_runs_before_the_host_lookup(api):
    # spec 3.3 step 4 (guard for nova-compute with false) comes before step 6 (host lookup)
    api.add_migration(source="ghost", status="done")
    with api.unchanged():
        body = {"host": "ghost", "binary": "nova-compute"}
        assert_fault(legacy(api, "force-down", {**body, "forced_down": False}),
                     400, FORCE_UP_REFUSED.format("ghost"))
        assert_fault(legacy(api, "force-down", {**body, "forced_down": True}),
                     404, "Host 'ghost' is not mapped to any cell")


@pytest.mark.parametrize(("status", "migration_type", "source", "dest"), [
    ("completed", "evacuation", "h1", "h2"),   # the restarted compute moved it on
    ("accepted", "evacuation", "h1", "h2"),
    ("done", "migration", "h1", "h2"),
    ("done", "resize", "h1", "h2"),
    ("done", "evacuation", "h2", "h1"),        # evacuated *to* h1, not away from it
])
def test_only_done_evacuations_away_from_the_host_block_force_up(api, status, migration_type, source, dest):
    # spec 3.6: source_compute = host, status "done" and migration_type "evacuation"
    created = api.compute("h1")
    update(api, created["id"], {"forced_down": True})
    api.add_migration(source=source, dest=dest, status=status, migration_type=migration_type)
    assert update(api, created["id"], {"forced_down": False}).json["service"]["forced_down"] is False
    update(api, created["id"], {"forced_down": True})
    result = legacy(api, "force-down", {"host": "h1", "binary": "nova-compute", "forced_down": False})
    assert result.json == {"service": {"host": "h1", "binary": "nova-compute", "forced_down": False}}


def test_deleted_done_evacuations_do_not_block_force_up(api):
    # spec 3.6 (soft-deleted migration records are not looked at)
    created = api.compute("h1")
    api.add_migration(source="h1", status="done")
    with api.engine.begin() as conn:
        conn.execute(db.migrations.update().values(deleted=db.migrations.c.id))
    assert update(api, created["id"], {"forced_down": False}).status_code == 200
