"""Microversion negotiation, version response headers and version discovery (spec 1.1–1.3)."""

from __future__ import annotations

import re

import pytest

from tests.api_client import TEST_HOST, Api, assert_fault

HOST = f"http://{TEST_HOST}"
MAX = "2.104"
INVALID_FORMAT = "API Version String {} is of invalid format. Must be of format MajorNum.MinorNum."
NOT_SUPPORTED = "Version {} is not supported by the API. Minimum is 2.1 and maximum is " + MAX + "."
VERSION_HEADERS = ("OpenStack-API-Version", "X-OpenStack-Nova-API-Version")
REQUEST_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")

V21_ENTRY = {"id": "v2.1", "status": "CURRENT", "version": MAX, "min_version": "2.1",
             "updated": "2013-07-23T11:33:21Z", "links": [{"rel": "self", "href": f"{HOST}/v2.1/"}]}
V20_ENTRY = {"id": "v2.0", "status": "DEPRECATED", "version": "", "min_version": "",
             "updated": "2025-07-04T12:00:00Z", "links": [{"rel": "self", "href": f"{HOST}/v2/"}]}
ENTRY_KEYS = ["id", "status", "version", "min_version", "updated", "links"]


@pytest.fixture
def api(tmp_path) -> Api:
    return Api(tmp_path)


def version_of(result) -> tuple[str, str]:
    return result.headers.get("OpenStack-API-Version"), result.headers.get("X-OpenStack-Nova-API-Version")


def assert_runs_at(result, version: str) -> None:
    assert result.status_code == 200, result.text
    assert version_of(result) == (f"compute {version}", version)


# -- 1.1 request headers --------------------------------------------------------------------------

def test_no_version_header_runs_at_the_minimum_not_the_maximum(api):
    # spec 1.1: neither header → 2.1
    api.compute("h1")
    result = api.get("/v2.1/os-services")
    assert_runs_at(result, "2.1")
    assert "forced_down" not in result.json["services"][0]
    assert isinstance(result.json["services"][0]["id"], int)


@pytest.mark.parametrize("version", ["2.1", "2.5", "2.53", "2.75", MAX])
def test_new_header_is_honoured_at_every_version(api, version):
    # spec 1.1: the new header works at every version, not only from 2.27
    assert_runs_at(api.get("/v2.1/os-services", headers={"OpenStack-API-Version": f"compute {version}"}),
                   version)


@pytest.mark.parametrize("version", ["2.1", "2.11", "2.53", MAX])
def test_legacy_header_is_honoured(api, version):
    # spec 1.1: legacy form X-OpenStack-Nova-API-Version: X.Y
    assert_runs_at(api.get("/v2.1/os-services", version=version), version)


def test_header_names_are_case_insensitive(api):
    # spec 1.1
    assert_runs_at(api.get("/v2.1/os-services", headers={"openstack-api-version": "compute 2.12"}), "2.12")
    assert_runs_at(api.get("/v2.1/os-services", headers={"X-OPENSTACK-NOVA-API-VERSION": "2.13"}), "2.13")


def test_compute_service_type_is_matched_case_insensitively(api):
    # spec 1.1: service type equals compute, case-insensitive
    assert_runs_at(api.get("/v2.1/os-services", headers={"OpenStack-API-Version": "COMPUTE 2.14"}), "2.14")


def test_new_header_wins_over_legacy_header(api):
    # spec 1.1: both present → the new one wins
    result = api.get("/v2.1/os-services", version="2.10", headers={"OpenStack-API-Version": "compute 2.60"})
    assert_runs_at(result, "2.60")


def test_new_header_list_is_scanned_from_the_last_entry(api):
    # spec 1.1: comma-separated entries, scanned from the last backwards; the first compute entry wins
    result = api.get("/v2.1/os-services",
                     headers={"OpenStack-API-Version": "compute 2.20, volume 3.5, compute 2.30, image 2.2"})
    assert_runs_at(result, "2.30")


def test_new_header_entries_without_a_version_are_skipped(api):
    # spec 1.1: an entry "compute" with no version part is skipped
    result = api.get("/v2.1/os-services", headers={"OpenStack-API-Version": "compute 2.40, compute"})
    assert_runs_at(result, "2.40")


def test_new_header_without_compute_entry_falls_back_to_legacy(api):
    # spec 1.1: no compute entry in the new header → the legacy header is used
    result = api.get("/v2.1/os-services", version="2.33", headers={"OpenStack-API-Version": "volume 3.50"})
    assert_runs_at(result, "2.33")


def test_new_header_without_compute_entry_and_no_legacy_runs_at_minimum(api):
    # spec 1.1
    result = api.get("/v2.1/os-services", headers={"OpenStack-API-Version": "volume 3.50, compute"})
    assert_runs_at(result, "2.1")


def test_legacy_header_list_uses_the_last_value_stripped(api):
    # spec 1.1: legacy comma-separated values → the last one, whitespace stripped
    assert_runs_at(api.get("/v2.1/os-services", version=" 2.11 , 2.22 "), "2.22")


def test_latest_means_the_maximum_and_is_echoed_concretely(api):
    # spec 1.1 latest = 2.104; spec 1.2 the response echoes the concrete version
    assert_runs_at(api.get("/v2.1/os-services", version="latest"), MAX)
    assert_runs_at(api.get("/v2.1/os-services", headers={"OpenStack-API-Version": "compute latest"}), MAX)


@pytest.mark.parametrize("text", ["LATEST", "Latest", "2.01", "02.1", "2", "2.", "v2.1", "2.1.1", "abc"])
def test_malformed_version_is_400_without_version_headers(api, text):
    # spec 1.1: malformed → 400 badRequest, and no microversion response headers (version stays null)
    for headers in ({"X-OpenStack-Nova-API-Version": text}, {"OpenStack-API-Version": f"compute {text}"}):
        raw = api.raw("GET", "/v2.1/os-services", headers={"X-Auth-Token": api.token, **headers})
        assert_fault(raw, 400, INVALID_FORMAT.format(text))
        for name in (*VERSION_HEADERS, "Vary"):
            assert raw.values(name) == []


@pytest.mark.parametrize("text", ["2.0", "1.5", "3.0", "2.105", "2.1000"])
def test_out_of_range_version_is_406_compute_fault_echoing_the_version(api, text):
    # spec 1.1: well formed but outside 2.1..max → 406 computeFault; the headers echo the version
    raw = api.raw("GET", "/v2.1/os-services",
                  headers={"X-Auth-Token": api.token, "X-OpenStack-Nova-API-Version": text})
    assert_fault(raw, 406, NOT_SUPPORTED.format(text))
    assert raw.values("OpenStack-API-Version") == [f"compute {text}"]
    assert raw.values("X-OpenStack-Nova-API-Version") == [text]
    assert raw.values("Vary") == list(VERSION_HEADERS)


def test_version_is_checked_on_the_v21_version_document(api):
    # spec 1.1: version checks run in every /v2.1 resource, including GET /v2.1
    assert_fault(api.get("/v2.1", token=None, version="2.01"), 400, INVALID_FORMAT.format("2.01"))
    assert_fault(api.get("/v2.1/", token=None, version="3.0"), 406, NOT_SUPPORTED.format("3.0"))


@pytest.mark.parametrize("text", ["2.01", "3.0", "LATEST"])
def test_root_document_ignores_version_headers(api, text):
    # spec 1.1: GET / turns version handling off: no 400, no 406, no version headers
    raw = api.raw("GET", "/", headers={"X-OpenStack-Nova-API-Version": text,
                                       "OpenStack-API-Version": f"compute {text}"})
    assert raw.status_code == 200
    assert raw.json()["versions"] == [V20_ENTRY, V21_ENTRY]
    for name in (*VERSION_HEADERS, "Vary"):
        assert raw.values(name) == []


# -- 1.2 response headers -------------------------------------------------------------------------

@pytest.mark.parametrize("version", [None, "2.1", "2.26", "2.27", "2.53", MAX])
def test_both_version_headers_and_two_separate_vary_lines_on_success(api, version):
    # spec 1.2: both headers at every microversion (2.1 when no header was sent); Vary as two lines
    headers = {"X-Auth-Token": api.token}
    if version:
        headers["X-OpenStack-Nova-API-Version"] = version
    raw = api.raw("GET", "/v2.1/os-services", headers=headers)
    expected = version or "2.1"
    assert raw.status_code == 200
    assert raw.values("OpenStack-API-Version") == [f"compute {expected}"]
    assert raw.values("X-OpenStack-Nova-API-Version") == [expected]
    assert raw.values("Vary") == ["OpenStack-API-Version", "X-OpenStack-Nova-API-Version"]
    assert raw.values("Content-Type") == ["application/json"]


def test_faults_carry_version_headers_and_fault_content_type(api):
    # spec 1.2: success or fault, when the version is known; faults are application/json; charset=UTF-8
    raw = api.raw("DELETE", "/v2.1/os-services/not-a-number",
                  headers={"X-Auth-Token": api.token, "X-OpenStack-Nova-API-Version": "2.52"})
    assert_fault(raw, 400, "Invalid input received: id must be an integer")
    assert raw.values("OpenStack-API-Version") == ["compute 2.52"]
    assert raw.values("X-OpenStack-Nova-API-Version") == ["2.52"]
    assert raw.values("Vary") == ["OpenStack-API-Version", "X-OpenStack-Nova-API-Version"]


@pytest.mark.parametrize("path", ["/v2.1/os-services", "/v2.1", "/v2.1/", "/v2", "/v2/"])
def test_request_ids_are_one_req_uuid4_in_two_headers(api, path):
    # spec 1.2: x-openstack-request-id and x-compute-request-id carry the same req-<uuid4>
    raw = api.raw("GET", path, headers={"X-Auth-Token": api.token})
    (openstack_id,) = raw.values("x-openstack-request-id")
    assert raw.values("x-compute-request-id") == [openstack_id]
    assert REQUEST_ID.match(openstack_id)
    again = api.raw("GET", path, headers={"X-Auth-Token": api.token})
    assert again.values("x-openstack-request-id") != [openstack_id]


@pytest.mark.parametrize("path", ["/", "/foo"])
def test_root_versions_pipeline_has_no_request_ids(api, path):
    # spec 1.2: request ids are not added in the root / versions pipeline
    raw = api.raw("GET", path)
    assert raw.values("x-openstack-request-id") == []
    assert raw.values("x-compute-request-id") == []


# -- 1.3 version discovery ------------------------------------------------------------------------

def test_root_lists_both_versions_sorted_by_id_without_media_types(tmp_path):
    # spec 1.3: GET / → 200, no authentication, key order, sorted by id, no "media-types"
    api = Api(tmp_path, auth_strategy="token")
    result = api.get("/", token=None)
    assert result.status_code == 200
    assert result.headers["Content-Type"] == "application/json"
    assert result.json == {"versions": [V20_ENTRY, V21_ENTRY]}
    for entry in result.json["versions"]:
        assert list(entry) == ENTRY_KEYS


@pytest.mark.parametrize("path", ["/v2.1", "/v2.1/"])
def test_v21_document_is_served_without_authentication(tmp_path, path):
    # spec 1.3: GET /v2.1 and /v2.1/ → the version document, with version headers
    api = Api(tmp_path, auth_strategy="token")
    result = api.get(path, token=None)
    assert result.status_code == 200
    assert result.json == {"version": {
        **V21_ENTRY,
        "links": [{"rel": "self", "href": f"{HOST}/v2.1/"},
                  {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.compute+json;version=2.1"}],
    }}
    assert list(result.json["version"]) == [*ENTRY_KEYS, "media-types"]
    assert version_of(result) == ("compute 2.1", "2.1")


@pytest.mark.parametrize("path", ["/v2", "/v2/"])
def test_v2_document_has_the_same_shape_for_v20(tmp_path, path):
    # spec 1.3: GET /v2 → v2.0 with empty version and min_version, media type ...;version=2
    api = Api(tmp_path, auth_strategy="token")
    result = api.get(path, token=None)
    assert result.status_code == 200
    assert result.json == {"version": {
        **V20_ENTRY,
        "links": [{"rel": "self", "href": f"{HOST}/v2/"},
                  {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.compute+json;version=2"}],
    }}


def test_hrefs_come_from_compute_link_prefix_when_set(tmp_path):
    # spec 1.3: the href prefix is the request URL's, or [api]compute_link_prefix
    api = Api(tmp_path, env={"NOVALITE_API__COMPUTE_LINK_PREFIX": "https://compute.example.com:8774/"})
    versions = api.get("/").json["versions"]
    assert [e["links"][0]["href"] for e in versions] == [
        "https://compute.example.com:8774/v2/", "https://compute.example.com:8774/v2.1/"]
    assert api.get("/v2.1").json["version"]["links"][0]["href"] == "https://compute.example.com:8774/v2.1/"


def test_other_root_paths_get_300_multiple_choices(api):
    # spec 1.3: a path that falls through to the root app → 300 {"choices": [...]}
    result = api.get("/foo", token=None)
    assert result.status_code == 300
    choices = result.json["choices"]
    assert [(c["id"], c["status"]) for c in choices] == [("v2.0", "DEPRECATED"), ("v2.1", "CURRENT")]
    assert choices[0]["links"] == [{"rel": "self", "href": f"{HOST}/v2/foo"}]
    assert choices[1]["links"] == [{"rel": "self", "href": f"{HOST}/v2.1/foo"}]
    assert [c["media-types"][0]["type"] for c in choices] == [
        "application/vnd.openstack.compute+json;version=2",
        "application/vnd.openstack.compute+json;version=2.1"]
    assert list(choices[0]) == ["id", "status", "links", "media-types"]


def test_discovery_reads_version_and_min_version_as_clients_do(api):
    # spec 1.3: novaclient/keystoneauth read version.version and version.min_version
    document = api.get("/v2.1").json["version"]
    assert (document["min_version"], document["version"]) == ("2.1", MAX)
    for entry in api.get("/").json["versions"]:
        assert {"id", "links", "status", "updated"} <= set(entry)  # Tempest's required keys
        assert entry["status"] in ("CURRENT", "SUPPORTED", "DEPRECATED")
