"""Error bodies, request-body handling and routing errors of the compute API (spec section 2)."""

from __future__ import annotations

import pytest

from novalite.api import faults
from novalite.api.app import build_falcon_app, make_application, split_vary
from novalite.api.wsgi import ComputeEndpoint, Reply, Versioned
from novalite.domain.services import Services
from tests.api_client import ADMIN, OTHER_PROJECT, PROJECT, Api, assert_fault

NOT_FOUND_HTML = (
    "<html>\n <head>\n  <title>404 Not Found</title>\n </head>\n <body>\n  <h1>404 Not Found</h1>\n"
    "  The resource could not be found.<br /><br />\n\n\n\n </body>\n</html>"
)
NOT_FOUND_JSON = {"message": "The resource could not be found.<br /><br />\n\n\n", "code": "404 Not Found",
                  "title": "Not Found"}
NOT_FOUND_TEXT = "404 Not Found\n\nThe resource could not be found.\n\n   "
SERVICE_UUID = "c4726392-27de-4ff9-b2e0-5aa1d08a520f"


@pytest.fixture
def api(tmp_path) -> Api:
    return Api(tmp_path)


# -- the fault envelope ---------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "name"), [
    (400, "badRequest"), (401, "unauthorized"), (403, "forbidden"), (404, "itemNotFound"),
    (405, "badMethod"), (409, "conflictingRequest"), (413, "overLimit"), (415, "badMediaType"),
    (429, "overLimit"), (501, "notImplemented"), (503, "serviceUnavailable"),
    (406, "computeFault"), (500, "computeFault"), (502, "computeFault"),
])
def test_fault_name_table(code, name):
    # spec 2: code → faultName; 409 is conflictingRequest; anything unlisted is computeFault
    assert faults.fault_name(code) == name


def test_unexpected_controller_error_is_500_compute_fault_naming_the_class(api, monkeypatch):
    # spec 2: "Unexpected API Error. Please contact the administrator\n<class 'x.y.Z'>"
    class Boom(Exception):
        pass

    def explode(*_args, **_kwargs):
        raise Boom("secret detail")

    monkeypatch.setattr(Services, "listing", explode)
    result = api.get("/v2.1/os-services")
    assert_fault(result, 500, "Unexpected API Error. Please contact the administrator\n"
                              f"<class '{__name__}.{Boom.__qualname__}'>")
    assert result.headers["OpenStack-API-Version"] == "compute 2.1"


# -- request bodies -------------------------------------------------------------------------------

def test_body_that_is_not_json_is_malformed_request_body(api):
    # spec 2: a body that is not valid JSON → 400 "Malformed request body"
    api.compute("h1")
    with api.unchanged():
        result = api.request("PUT", "/v2.1/os-services/enable", version="2.1", body=b"{not json",
                             headers={"Content-Type": "application/json"})
        assert_fault(result, 400, "Malformed request body")


@pytest.mark.parametrize("content_type",
                         ["application/xml", "text/html", "application/x-www-form-urlencoded"])
def test_unsupported_content_type_is_415(api, content_type):
    # spec 2: other Content-Types → 415 badMediaType "Unsupported Content-Type"
    api.compute("h1")
    with api.unchanged():
        result = api.request("PUT", "/v2.1/os-services/disable", version="2.1",
                             body=b'{"host": "h1", "binary": "nova-compute"}',
                             headers={"Content-Type": content_type})
        assert_fault(result, 415, "Unsupported Content-Type")


def test_unsupported_content_type_is_415_even_without_a_body(api):
    # spec 2: the Content-Type header itself is checked, whatever the method and body
    assert_fault(api.get("/v2.1/os-services", headers={"Content-Type": "application/xml"}),
                 415, "Unsupported Content-Type")


@pytest.mark.parametrize("content_type", [
    "application/json", "application/json; charset=UTF-8", "application/vnd.openstack.compute+json",
    "text/plain", "",
])
def test_json_content_types_and_none_are_parsed_as_json(api, content_type):
    # spec 2: application/json, the vendor type, text/plain and empty are accepted; body parsed as JSON
    api.compute("h1")
    result = api.request("PUT", "/v2.1/os-services/disable", version="2.1",
                         body=b'{"host": "h1", "binary": "nova-compute"}',
                         headers={"Content-Type": content_type})
    assert result.status_code == 200, result.text
    assert result.json == {"service": {"host": "h1", "binary": "nova-compute", "status": "disabled"}}


def test_json_body_with_no_content_type_header_is_parsed(api):
    # spec 2: no Content-Type at all is "none" too
    api.compute("h1")
    raw = api.raw("PUT", "/v2.1/os-services/disable", body=b'{"host": "h1", "binary": "nova-compute"}',
                  headers={"X-Auth-Token": api.token})
    assert raw.status_code == 200
    assert raw.json()["service"]["status"] == "disabled"


@pytest.mark.parametrize("path", ["/v2.1/os-services/enable", f"/v2.1/os-services/{SERVICE_UUID}"])
@pytest.mark.parametrize("version", ["2.1", "2.53"])
def test_empty_put_body_is_none_and_fails_the_schema(api, path, version):
    # spec 2: PUT with Content-Length 0 or no Content-Length → body None → "None is not of type 'object'"
    with api.unchanged():
        raw = api.raw("PUT", path,
                      headers={"X-Auth-Token": api.token, "X-OpenStack-Nova-API-Version": version})
        assert_fault(raw, 400, "None is not of type 'object'")
        result = api.request("PUT", path, version=version)  # TestClient: no body, no Content-Length
        assert_fault(result, 400, "None is not of type 'object'")


def test_bodies_of_get_and_delete_are_not_read(api):
    # spec 2 (Nova reads a body only for PUT and POST): a non-JSON body on GET/DELETE is ignored
    service = api.compute("h1")
    assert api.request("GET", "/v2.1/os-services", body=b"{oops").status_code == 200
    assert api.request("DELETE", f"/v2.1/os-services/{service['id']}", version="2.53",
                       body=b"{oops").status_code == 204


# -- project_id in the URL ------------------------------------------------------------------------

def test_routes_are_identical_with_the_project_id_prefix(api):
    # spec 3.1 / 2: /v2.1/{project_id}/os-services serves the same API
    api.compute("h1")
    with_prefix = api.get(f"/v2.1/{PROJECT}/os-services", version="2.53")
    assert with_prefix.status_code == 200
    assert with_prefix.json == api.get("/v2.1/os-services", version="2.53").json


def test_project_id_that_differs_from_the_token_is_400(api):
    # spec 2: "Malformed request URL: URL's project_id '<a>' doesn't match Context's project_id '<b>'"
    api.compute("h1")
    with api.unchanged():
        for method, path, body in [
            ("GET", f"/v2.1/{OTHER_PROJECT}/os-services", None),
            ("PUT", f"/v2.1/{OTHER_PROJECT}/os-services/disable", {"host": "h1", "binary": "nova-compute"}),
            ("DELETE", f"/v2.1/{OTHER_PROJECT}/os-services/1", None),
        ]:
            result = api.request(method, path, json=body, token=ADMIN)
            assert_fault(result, 400, f"Malformed request URL: URL's project_id '{OTHER_PROJECT}' doesn't "
                                      f"match Context's project_id '{PROJECT}'")


def test_project_id_must_be_hex_or_dashes(api):
    # spec 2: the project_id segment must be hex or dashes; anything else does not match a route
    result = api.get("/v2.1/not_a_project/os-services", headers={"Accept": "application/json"})
    assert result.status_code == 404
    assert result.json == NOT_FOUND_JSON


# -- unknown routes and methods -------------------------------------------------------------------

UNROUTED = [
    ("POST", "/v2.1/os-services"),
    ("GET", f"/v2.1/os-services/{SERVICE_UUID}"),
    ("PUT", "/v2.1/os-services"),
    ("PATCH", "/v2.1/os-services"),
    ("DELETE", "/v2.1/os-services"),
    ("OPTIONS", "/v2.1/os-services"),
    ("TRACE", "/v2.1/os-services"),
    ("PROPFIND", "/v2.1/os-services"),
    ("GET", "/v2.1/os-hosts"),
    ("GET", f"/v2.1/{PROJECT}/nothing-here"),
    ("POST", f"/v2.1/{PROJECT}/os-services"),
]


@pytest.mark.parametrize(("method", "path"), UNROUTED)
@pytest.mark.parametrize(("accept", "content_type", "body"), [
    (None, "text/html; charset=UTF-8", NOT_FOUND_HTML),
    ("*/*", "text/html; charset=UTF-8", NOT_FOUND_HTML),
    ("text/html", "text/html; charset=UTF-8", NOT_FOUND_HTML),
    ("application/json", "application/json", NOT_FOUND_JSON),
    ("text/plain", "text/plain; charset=UTF-8", NOT_FOUND_TEXT),
    ("application/xml", "text/plain; charset=UTF-8", NOT_FOUND_TEXT),
])
def test_unknown_route_or_method_is_a_bare_404_never_405(api, method, path, accept, content_type, body):
    # spec 2: 404, never 405; webob's bare 404 chosen by Accept; no fault body, no version headers
    headers = {"X-Auth-Token": api.token, "X-OpenStack-Nova-API-Version": "2.53"}
    if accept:
        headers["Accept"] = accept
    with api.unchanged():
        raw = api.raw(method, path, headers=headers)
    assert raw.status_code == 404
    assert raw.values("Content-Type") == [content_type]
    text = raw.body.decode()
    assert (raw.json() if content_type == "application/json" else text) == body
    for name in ("OpenStack-API-Version", "X-OpenStack-Nova-API-Version", "Vary"):
        assert raw.values(name) == []


def test_bare_404_json_code_is_a_string(api):
    # spec 2: in the webob JSON 404, "code" is the string "404 Not Found"
    result = api.request("POST", "/v2.1/os-services", headers={"Accept": "application/json"})
    assert result.status_code == 404
    assert result.json["code"] == "404 Not Found"


def test_method_not_served_at_the_requested_version_is_a_404_fault_with_version_headers(api):
    # spec 2: a matched route whose method is not available at the version → itemNotFound fault.
    # No os-services route has such a gap, so one is mounted the way routes.py declares them.
    application = make_application(api.settings, api.engine, enforcer=None, agent_auth=None)
    falcon_app = build_falcon_app(application)
    falcon_app.add_route("/v2.1/os-gap", ComputeEndpoint(application, {
        "GET": [Versioned("2.1", "2.10", lambda req: Reply(200, {"low": True})),
                Versioned("2.60", "", lambda req: Reply(200, {"high": True}))],
    }))
    api.app = split_vary(falcon_app)
    assert api.raw("GET", "/v2.1/os-gap", headers={"X-Auth-Token": ADMIN}).json() == {"low": True}
    at = lambda version: {"X-Auth-Token": ADMIN, "X-OpenStack-Nova-API-Version": version}  # noqa: E731
    raw = api.raw("GET", "/v2.1/os-gap", headers=at("2.30"))
    assert_fault(raw, 404, "The resource could not be found.")
    assert raw.values("OpenStack-API-Version") == ["compute 2.30"]
    assert raw.values("Vary") == ["OpenStack-API-Version", "X-OpenStack-Nova-API-Version"]
    assert api.raw("GET", "/v2.1/os-gap", headers=at("2.60")).json() == {"high": True}


# -- request ids and 401 --------------------------------------------------------------------------

def test_faults_and_bare_404s_carry_request_ids(api):
    # spec 1.2 / 2: the /v2.1 pipeline adds both request-id headers to every response
    for raw in (api.raw("GET", "/v2.1/os-services", headers={"X-Auth-Token": api.token,
                                                              "X-OpenStack-Nova-API-Version": "2.01"}),
                api.raw("POST", "/v2.1/os-services", headers={"X-Auth-Token": api.token})):
        (request_id,) = raw.values("x-openstack-request-id")
        assert raw.values("x-compute-request-id") == [request_id]
        assert request_id.startswith("req-")


def test_missing_token_is_401_not_a_nova_fault(tmp_path):
    # spec 2: 401 comes from the auth layer (keystonemiddleware in Nova), not from Nova's fault code
    api = Api(tmp_path, auth_strategy="token")
    result = api.get("/v2.1/os-services", token=None)
    assert result.status_code == 401
    assert "unauthorized" not in result.json
    assert api.get("/v2.1/os-services", token="wrong").status_code == 401
    assert api.get("/v2.1/os-services").status_code == 200
