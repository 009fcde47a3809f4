"""The flavors API (Nova's flavors and os-flavor-manage): list, detail, show, create, update, delete.

Microversion boundaries: 2.1 (base shape, swap ""), 2.55 (description; PUT), 2.61 (extra_specs),
2.75 (swap 0; unknown list parameters refused). Every refused request changes nothing.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from novalite.db import flavors as flavors_db
from novalite.domain.flavors import DEFAULT_FLAVORS, ensure_default_flavors
from tests.api_client import MEMBER, OTHER_PROJECT, PROJECT, TEST_HOST, Api, assert_fault

FULL_KEYS = ["id", "name", "ram", "disk", "swap", "OS-FLV-EXT-DATA:ephemeral", "OS-FLV-DISABLED:disabled",
             "vcpus", "os-flavor-access:is_public", "rxtx_factor", "links"]
ENDPOINT = f"http://{TEST_HOST}"
OTHER_MEMBER = f"demo:{OTHER_PROJECT}"


@pytest.fixture
def api(tmp_path) -> Api:
    return Api(tmp_path)


def create(api: Api, version: str = "2.1", token: str = "", **flavor):
    body = {"name": "f1", "ram": 512, "vcpus": 1, "disk": 1, **flavor}
    return api.request("POST", "/v2.1/flavors", json={"flavor": body}, version=version, token=token)


def created(api: Api, version: str = "2.1", **flavor) -> dict:
    result = create(api, version, **flavor)
    assert result.status_code == 200, result.text
    return result.json["flavor"]


def flavor_rows(api: Api) -> list[dict]:
    with api.engine.connect() as conn:
        tables = (flavors_db.flavors, flavors_db.extra_specs, flavors_db.flavor_projects)
        return [dict(r._mapping) for t in tables for r in conn.execute(select(t).order_by(t.c.id))]


@contextlib.contextmanager
def unchanged(api: Api) -> Iterator[None]:
    before = flavor_rows(api)
    yield
    assert flavor_rows(api) == before


def row_id(api: Api, flavorid: str) -> int:
    with api.engine.connect() as conn:
        return flavors_db.flavor_get_by_flavorid(conn, flavorid).id


def set_extra_spec(api: Api, flavorid: str, key: str, value: str) -> None:
    with api.engine.begin() as conn:
        flavors_db.extra_spec_set(conn, row_id(api, flavorid), key, value)


def give_access(api: Api, flavorid: str, project_id: str) -> None:
    with api.engine.begin() as conn:
        flavors_db.flavor_add_project(conn, row_id(api, flavorid), project_id)


def set_disabled(api: Api, flavorid: str) -> None:
    with api.engine.begin() as conn:
        conn.execute(flavors_db.flavors.update().where(flavors_db.flavors.c.flavorid == flavorid)
                     .values(disabled=True))


def listed_ids(api: Api, query: str = "", version: str = "2.1", token: str = "", detail: bool = False) -> list:
    path = "/v2.1/flavors/detail" if detail else "/v2.1/flavors"
    result = api.get(path + (f"?{query}" if query else ""), version=version, token=token)
    assert result.status_code == 200, result.text
    return [f["id"] for f in result.json["flavors"]]


def links(flavorid: str, project: str = "", root: str = ENDPOINT) -> list[dict]:
    middle = f"/{project}" if project else ""
    return [{"rel": "self", "href": f"{root}/v2.1{middle}/flavors/{flavorid}"},
            {"rel": "bookmark", "href": f"{root}{middle}/flavors/{flavorid}"}]


# == shapes by microversion ======================================================================

def test_no_flavors_are_shipped(api):
    # Issue 3 item 2: the API starts empty; ensure_default_flavors is the caller's choice.
    assert api.get("/v2.1/flavors").json == {"flavors": []}
    assert api.get("/v2.1/flavors/detail").json == {"flavors": []}


def test_create_at_21_returns_the_full_view_with_swap_empty_string(api):
    result = create(api, id=7, ram=512, vcpus=2, disk=10)
    assert result.status_code == 200  # Nova answers 200, not 201
    flavor = result.json["flavor"]
    assert list(flavor) == FULL_KEYS
    assert flavor == {"id": "7", "name": "f1", "ram": 512, "disk": 10, "swap": "",
                      "OS-FLV-EXT-DATA:ephemeral": 0, "OS-FLV-DISABLED:disabled": False, "vcpus": 2,
                      "os-flavor-access:is_public": True, "rxtx_factor": 1.0, "links": links("7")}


@pytest.mark.parametrize("flavor_id", [None, 0, "absent"])
def test_create_without_an_id_generates_a_uuid(api, flavor_id):
    # Nova's flavors.create: an absent, null (or falsy) id becomes a new UUID.
    extra = {} if flavor_id == "absent" else {"id": flavor_id}
    flavor = created(api, **extra)
    assert str(uuid.UUID(flavor["id"])) == flavor["id"]


def test_create_keeps_swap_ephemeral_rxtx_and_privacy(api):
    flavor = created(api, id="x.1", swap=512, **{"OS-FLV-EXT-DATA:ephemeral": 5, "rxtx_factor": "2.5",
                                                 "os-flavor-access:is_public": "false"})
    assert (flavor["swap"], flavor["OS-FLV-EXT-DATA:ephemeral"], flavor["rxtx_factor"],
            flavor["os-flavor-access:is_public"]) == (512, 5, 2.5, False)


@pytest.mark.parametrize("version, description, extra_specs, swap", [
    ("2.1", False, False, ""), ("2.54", False, False, ""), ("2.55", True, False, ""), ("2.60", True, False, ""),
    ("2.61", True, True, ""), ("2.74", True, True, ""), ("2.75", True, True, 0), ("latest", True, True, 0),
])
def test_show_shape_at_each_boundary(api, version, description, extra_specs, swap):
    created(api, id="1", version="2.55", description="tiny one")
    set_extra_spec(api, "1", "hw:cpu_policy", "dedicated")
    flavor = api.get("/v2.1/flavors/1", version=version).json["flavor"]
    expected_keys = FULL_KEYS + ["description"] * description + ["extra_specs"] * extra_specs
    assert list(flavor) == expected_keys
    assert flavor["swap"] == swap
    if description:
        assert flavor["description"] == "tiny one"
    if extra_specs:
        assert flavor["extra_specs"] == {"hw:cpu_policy": "dedicated"}


@pytest.mark.parametrize("version, keys", [
    ("2.1", ["id", "name", "links"]), ("2.54", ["id", "name", "links"]),
    ("2.55", ["id", "name", "links", "description"]), ("2.61", ["id", "name", "links", "description"]),
    ("2.75", ["id", "name", "links", "description"]),
])
def test_brief_list_adds_description_from_255_and_nothing_else(api, version, keys):
    created(api, id="1")
    (flavor,) = api.get("/v2.1/flavors", version=version).json["flavors"]
    assert list(flavor) == keys
    assert flavor["links"] == links("1")


@pytest.mark.parametrize("version, extra", [
    ("2.1", []), ("2.55", ["description"]), ("2.61", ["description", "extra_specs"]),
    ("2.75", ["description", "extra_specs"]),
])
def test_detail_list_follows_the_show_shape(api, version, extra):
    created(api, id="1")
    (flavor,) = api.get("/v2.1/flavors/detail", version=version).json["flavors"]
    assert list(flavor) == FULL_KEYS + extra
    assert flavor["swap"] == (0 if version == "2.75" else "")


def test_nonzero_swap_is_an_integer_at_every_version(api):
    created(api, id="1", swap=256)
    for version in ("2.1", "2.74", "2.75"):
        assert api.get("/v2.1/flavors/1", version=version).json["flavor"]["swap"] == 256


def test_create_at_261_shows_empty_extra_specs_and_description(api):
    flavor = created(api, version="2.61", id="1", description="d")
    assert (flavor["description"], flavor["extra_specs"]) == ("d", {})


def test_extra_specs_left_out_when_policy_denies_index(tmp_path):
    # os_compute_api:os-flavor-extra-specs:index is checked quietly: the key is dropped, no 403.
    policy = tmp_path / "policy.yaml"
    policy.write_text('"os_compute_api:os-flavor-extra-specs:index": "!"\n')
    api = Api(tmp_path / "run", env={"NOVALITE_OSLO_POLICY__POLICY_FILE": str(policy)})
    created(api, id="1")
    flavor = api.get("/v2.1/flavors/1", version="2.61").json["flavor"]
    assert "extra_specs" not in flavor and "description" in flavor


def test_links_carry_the_project_of_the_url_and_the_link_prefix(tmp_path):
    api = Api(tmp_path / "a")
    created(api, id="1")
    flavor = api.get(f"/v2.1/{PROJECT}/flavors/1", token=MEMBER).json["flavor"]
    assert flavor["links"] == links("1", PROJECT)
    api = Api(tmp_path / "b", env={"NOVALITE_API__COMPUTE_LINK_PREFIX": "https://cloud.example/compute"})
    created(api, id="1")
    assert api.get("/v2.1/flavors/1").json["flavor"]["links"] == links("1", root="https://cloud.example/compute")


# == show ========================================================================================

def test_show_unknown_flavor_is_404(api):
    assert_fault(api.get("/v2.1/flavors/nope"), 404, "Flavor nope could not be found.")


def test_show_ignores_unknown_query_parameters_even_at_275(api):
    created(api, id="1")
    assert api.get("/v2.1/flavors/1?foo=bar", version="2.75").status_code == 200


# == private and disabled flavors =================================================================

def test_private_flavor_hidden_from_other_projects_until_access_is_given(api):
    created(api, id="pub")
    created(api, id="priv", name="private", **{"os-flavor-access:is_public": False})
    assert listed_ids(api, token=MEMBER) == ["pub"]
    assert_fault(api.get("/v2.1/flavors/priv", token=MEMBER), 404, "Flavor priv could not be found.")
    give_access(api, "priv", PROJECT)
    assert listed_ids(api, token=MEMBER) == ["priv", "pub"]
    assert api.get("/v2.1/flavors/priv", token=MEMBER).status_code == 200
    assert listed_ids(api, token=OTHER_MEMBER) == ["pub"]


def test_admin_is_public_filter_public_by_default_false_and_none(api):
    created(api, id="pub")
    created(api, id="priv", name="private", **{"os-flavor-access:is_public": False})
    assert listed_ids(api) == ["pub"]
    assert listed_ids(api, "is_public=false") == ["priv"]
    assert listed_ids(api, "is_public=None") == ["priv", "pub"]
    assert listed_ids(api, "is_public=yes") == ["pub"]
    assert api.get("/v2.1/flavors/priv").status_code == 200
    # Admins of a project with access see it in the default (public) list too.
    give_access(api, "priv", PROJECT)
    assert listed_ids(api, token=f"admin:{PROJECT}") == ["priv", "pub"]


def test_is_public_parameter_is_ignored_for_non_admins(api):
    created(api, id="pub")
    created(api, id="priv", name="private", **{"os-flavor-access:is_public": False})
    assert listed_ids(api, "is_public=none", token=MEMBER) == ["pub"]
    assert listed_ids(api, "is_public=bogus", token=MEMBER) == ["pub"]


def test_invalid_is_public_is_400_for_admins(api):
    assert_fault(api.get("/v2.1/flavors?is_public=maybe"), 400, "Invalid is_public filter [maybe]")


def test_disabled_flavors_listed_for_admins_only_but_shown_to_all(api):
    created(api, id="1")
    set_disabled(api, "1")
    assert listed_ids(api) == ["1"]
    assert listed_ids(api, token=MEMBER) == []
    flavor = api.get("/v2.1/flavors/1", token=MEMBER).json["flavor"]
    assert flavor["OS-FLV-DISABLED:disabled"] is True


# == list filters, sorting, pagination ===========================================================

@pytest.fixture
def three(api) -> Api:
    created(api, id="1", name="small", ram=512, disk=1)
    created(api, id="10", name="big", ram=4096, disk=40)
    created(api, id="2", name="medium", ram=2048, disk=20)
    return api


def test_default_order_is_flavorid_as_text(three):
    assert listed_ids(three) == ["1", "10", "2"]


def test_min_ram_and_min_disk(three):
    assert listed_ids(three, "minRam=2048") == ["10", "2"]
    assert listed_ids(three, "minDisk=21") == ["10"]
    assert listed_ids(three, "minRam=1&minRam=4000") == ["10"]  # the last value counts


@pytest.mark.parametrize("name", ["minRam", "minDisk"])
def test_non_integer_min_filters_are_400(three, name):
    assert_fault(three.get(f"/v2.1/flavors?{name}=1.5"), 400, f"Invalid {name} filter [1.5]")


def test_sort_key_and_dir(three):
    assert listed_ids(three, "sort_key=memory_mb") == ["1", "2", "10"]
    assert listed_ids(three, "sort_key=name&sort_dir=desc") == ["1", "2", "10"]
    assert listed_ids(three, "sort_key=vcpu_weight&sort_dir=desc") == ["2", "10", "1"]  # NULL: by id


def test_invalid_sort_key_is_400(three):
    result = three.get("/v2.1/flavors?sort_key=ram")
    assert result.status_code == 400
    assert result.json["badRequest"]["message"].startswith(
        "Invalid input for query parameters sort_key. Value: ram. 'ram' is not one of ['created_at'")


def test_limit_marker_and_next_link(three):
    result = three.get("/v2.1/flavors?limit=2&sort_key=memory_mb", version="2.1")
    body = result.json
    assert [f["id"] for f in body["flavors"]] == ["1", "2"]
    assert body["flavors_links"] == [
        {"rel": "next", "href": f"{ENDPOINT}/v2.1/flavors?limit=2&sort_key=memory_mb&marker=2"}]
    result = three.get("/v2.1/flavors/detail?limit=2&sort_key=memory_mb&marker=2")
    assert [f["id"] for f in result.json["flavors"]] == ["10"]
    assert "flavors_links" not in result.json
    detail = three.get("/v2.1/flavors/detail?limit=1").json
    assert detail["flavors_links"][0]["href"] == f"{ENDPOINT}/v2.1/flavors/detail?limit=1&marker=1"


def test_limit_zero_lists_nothing_and_limit_above_max_is_max(three):
    assert listed_ids(three, "limit=0") == []
    assert listed_ids(three, "limit=5000") == ["1", "10", "2"]


def test_unknown_marker_is_400(three):
    assert_fault(three.get("/v2.1/flavors?marker=nope"), 400, "marker [nope] not found")


def test_negative_limit_is_400(three):
    assert_fault(three.get("/v2.1/flavors?limit=-1"), 400,
                 "Invalid input for query parameters limit. Value: -1. '-1' does not match '^[0-9]*$'")


@pytest.mark.parametrize("path", ["/v2.1/flavors", "/v2.1/flavors/detail"])
def test_unknown_query_parameters_allowed_before_275_refused_from_275(three, path):
    assert three.get(f"{path}?foo=1", version="2.74").status_code == 200
    assert_fault(three.get(f"{path}?foo=1", version="2.75"), 400,
                 "Additional properties are not allowed ('foo' was unexpected)")


# == create: validation, policy, conflicts ========================================================

@pytest.mark.parametrize("flavor, message", [
    ({"name": " f"}, "An invalid 'name' value was provided. The name must be: printable characters. "
                     "Can not start or end with whitespace."),
    ({"name": ""}, "Invalid input for field/attribute name. Value: . '' should be non-empty"),
    ({"ram": 0}, "Invalid input for field/attribute ram. Value: 0. 0 is less than the minimum of 1"),
    ({"ram": "0"}, "Invalid input for field/attribute ram. Value: 0. 0 is less than the minimum of 1"),
    ({"vcpus": "a"}, "Invalid input for field/attribute vcpus. Value: a. 'a' does not match '^[0-9]+$'"),
    ({"disk": -1}, "Invalid input for field/attribute disk. Value: -1. -1 is less than the minimum of 0"),
    ({"ram": 2147483648}, "Invalid input for field/attribute ram. Value: 2147483648. "
                          "2147483648 is greater than the maximum of 2147483647"),
    ({"rxtx_factor": 0}, "Invalid input for field/attribute rxtx_factor. Value: 0. "
                         "0 is less than or equal to the minimum of 0"),
    ({"id": "a!"}, "Invalid input for field/attribute id. Value: a!. 'a!' does not match "
                   "'^(?! )[a-zA-Z0-9. _-]+(?<! )$'"),
    ({"os-flavor-access:is_public": "maybe"}, None),
    ({"foo": 1}, "Additional properties are not allowed ('foo' was unexpected)"),
    ({"description": "d"}, "Additional properties are not allowed ('description' was unexpected)"),
])
def test_create_validation_errors_change_nothing(api, flavor, message):
    with unchanged(api):
        result = create(api, version="2.54", **flavor)
    assert result.status_code == 400, result.text
    if message:
        assert result.json["badRequest"]["message"].endswith(message)


def test_create_missing_field_and_missing_body(api):
    with unchanged(api):
        result = api.request("POST", "/v2.1/flavors", json={"flavor": {"name": "x", "ram": 1, "vcpus": 1}})
        assert_fault(result, 400, "Invalid input for field/attribute flavor. Value: "
                                  "{'name': 'x', 'ram': 1, 'vcpus': 1}. 'disk' is a required property")
        assert_fault(api.request("POST", "/v2.1/flavors"), 400, "None is not of type 'object'")


def test_description_accepted_from_255(api):
    assert created(api, version="2.55", description=None)["description"] is None
    assert created(api, version="2.55", name="f2", description="")["description"] == ""


def test_create_by_non_admin_is_403_after_validation(api):
    with unchanged(api):
        assert_fault(create(api, token=MEMBER), 403,
                     "Policy doesn't allow os_compute_api:os-flavor-manage:create to be performed.")
        assert create(api, token=MEMBER, ram=0).status_code == 400


def test_duplicate_id_and_name_are_409(api):
    created(api, id="1", name="one")
    with unchanged(api):
        assert_fault(create(api, id="1", name="other"), 409, "Flavor with ID 1 already exists.")
        assert_fault(create(api, id=1, name="other"), 409, "Flavor with ID 1 already exists.")
        assert_fault(create(api, id="2", name="one"), 409, "Flavor with name one already exists.")


# == PUT /flavors/{id} (2.55+) ===================================================================

def test_update_description_from_255(api):
    created(api, id="1")
    with unchanged(api):
        assert_fault(api.put("/v2.1/flavors/1", {"flavor": {"description": "x"}}, version="2.54"),
                     404, "The resource could not be found.")
    result = api.put("/v2.1/flavors/1", {"flavor": {"description": "new"}}, version="2.55")
    assert result.status_code == 200
    assert list(result.json["flavor"]) == [*FULL_KEYS, "description"]
    assert result.json["flavor"]["description"] == "new"
    result = api.put("/v2.1/flavors/1", {"flavor": {"description": None}}, version="2.75")
    assert (result.json["flavor"]["description"], result.json["flavor"]["extra_specs"]) == (None, {})


def test_update_refusals_change_nothing(api):
    created(api, id="1")
    with unchanged(api):
        assert_fault(api.put("/v2.1/flavors/1", {"flavor": {}}, version="2.55"), 400,
                     "Invalid input for field/attribute flavor. Value: {}. 'description' is a required property")
        assert_fault(api.put("/v2.1/flavors/1", {"flavor": {"description": "x"}}, version="2.55", token=MEMBER),
                     403, "Policy doesn't allow os_compute_api:os-flavor-manage:update to be performed.")
        assert_fault(api.put("/v2.1/flavors/2", {"flavor": {"description": "x"}}, version="2.55"),
                     404, "Flavor 2 could not be found.")


# == DELETE /flavors/{id} ========================================================================

def test_delete_is_202_without_body_then_404(api):
    created(api, id="1")
    set_extra_spec(api, "1", "k", "v")
    give_access(api, "1", PROJECT)
    result = api.delete("/v2.1/flavors/1")
    assert (result.status_code, result.content) == (202, b"")
    assert flavor_rows(api) == []
    assert_fault(api.delete("/v2.1/flavors/1"), 404, "Flavor 1 could not be found.")


def test_delete_by_non_admin_is_403_before_the_lookup(api):
    created(api, id="1")
    with unchanged(api):
        for flavor_id in ("1", "missing"):
            assert_fault(api.delete(f"/v2.1/flavors/{flavor_id}", token=MEMBER), 403,
                         "Policy doesn't allow os_compute_api:os-flavor-manage:delete to be performed.")


def test_put_and_delete_on_detail_act_on_a_flavor_named_detail(api):
    assert_fault(api.delete("/v2.1/flavors/detail"), 404, "Flavor detail could not be found.")
    created(api, id="detail")
    assert api.delete("/v2.1/flavors/detail").status_code == 202


# == default flavors =============================================================================

def test_ensure_default_flavors_creates_the_m1_set_once(api):
    assert ensure_default_flavors(api.engine) == [name for name, *_ in DEFAULT_FLAVORS]
    assert ensure_default_flavors(api.engine) == []
    tiny = api.get("/v2.1/flavors/1").json["flavor"]
    assert (tiny["name"], tiny["ram"], tiny["vcpus"], tiny["disk"]) == ("m1.tiny", 512, 1, 1)
    assert listed_ids(api) == ["1", "2", "3", "4", "5"]


# == GET /flavors/{id}/os-extra_specs (read only) ================================================

def test_extra_specs_index(api):
    created(api, id="1")
    set_extra_spec(api, "1", "hw:mem_page_size", "large")
    assert api.get("/v2.1/flavors/1/os-extra_specs").json == {"extra_specs": {"hw:mem_page_size": "large"}}
    assert api.get("/v2.1/flavors/1/os-extra_specs", token=MEMBER).status_code == 200
    assert_fault(api.get("/v2.1/flavors/2/os-extra_specs"), 404, "Flavor 2 could not be found.")
