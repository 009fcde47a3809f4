"""The real clients against a live novalite API: flavors (list, detail, show, create, update, delete).

``openstack`` (OSC), ``nova`` (python-novaclient), openstacksdk and tempest.lib's FlavorsClient,
whose response schemas check our bodies at each microversion. One API process serves the module;
every test uses its own flavor names and ids and reads the result back over plain HTTP.
"""

from __future__ import annotations

import json
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openstack as openstacksdk
import pytest
import requests
from tempest.lib import exceptions as tempest_exc
from tempest.lib.services.compute.flavors_client import FlavorsClient

from tests.clients import (
    FixedAuthProvider,
    compute_microversion,
    nova,
    openstack,
    openstack_json,
    parse_table,
    token_env,
)
from tests.stack import Stack, module_stack

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with module_stack(tmp_path_factory.mktemp("flavors-live")) as live:
        yield live


class _IdentityDiscovery(BaseHTTPRequestHandler):
    """Answers every GET with a Keystone v3 version document, nothing more."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        href = f"http://{self.headers['Host']}/v3/"
        body = json.dumps({"version": {"id": "v3.14", "status": "stable", "updated": "2020-04-07T00:00:00Z",
                                       "links": [{"rel": "self", "href": href}],
                                       "media-types": []}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def osc_env(stack):
    """OSC 10's flavor create/set insist on an identity v3 proxy before doing anything (even without
    --project). Without Keystone, a version document on 127.0.0.1 satisfies that check; no identity
    call is made by the commands used here."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _IdentityDiscovery)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {**token_env(stack), "OS_IDENTITY_API_VERSION": "3",
               "OS_IDENTITY_ENDPOINT_OVERRIDE": f"http://127.0.0.1:{server.server_address[1]}/v3/"}
    finally:
        server.shutdown()
        server.server_close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def server_flavor(stack: Stack, flavor_id: str, version: str = "2.75") -> dict | None:
    """GET /flavors/{id} as the server answers it; None when it is gone."""
    resp = requests.get(f"{stack.endpoint}/flavors/{flavor_id}", headers=stack.admin_headers(version), timeout=5)
    if resp.status_code == 404:
        return None
    resp.raise_for_status()
    return resp.json()["flavor"]


# -- openstack CLI (OSC) ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["2.1", "2.55", "2.61", "2.75", None],
                         ids=["2.1", "2.55", "2.61", "2.75", "negotiated"])
def test_openstack_flavor_create_list_show_delete(stack, osc_env, version):
    name, flavor_id = unique("osc"), unique("id")
    args = ["--id", flavor_id, "--ram", "256", "--vcpus", "2", "--disk", "3", "--swap", "64"]
    with_description = version is None or version != "2.1"
    if with_description:
        args += ["--description", "made by osc"]
    shown = openstack_json(stack, "flavor", "create", *args, name, env=osc_env, version=version)
    assert (shown["id"], shown["name"], shown["ram"], shown["vcpus"], shown["disk"]) == (flavor_id, name, 256, 2, 3)
    held = server_flavor(stack, flavor_id)
    assert (held["name"], held["swap"], held["description"]) == (
        name, 64, "made by osc" if with_description else None)

    listed = openstack_json(stack, "flavor", "list", env=osc_env, version=version)
    assert {"ID": flavor_id, "Name": name, "RAM": 256, "Disk": 3, "Ephemeral": 0, "VCPUs": 2,
            "Is Public": True} in listed

    shown = openstack_json(stack, "flavor", "show", name, env=osc_env, version=version)
    assert (shown["id"], shown["swap"], shown["os-flavor-access:is_public"]) == (flavor_id, 64, True)

    openstack(stack, "flavor", "delete", flavor_id, env=osc_env, version=version)
    assert server_flavor(stack, flavor_id) is None
    failed = openstack(stack, "flavor", "show", flavor_id, env=osc_env, version=version, expect_rc=1)
    assert flavor_id in failed.stderr


def test_openstack_private_flavor_listed_with_private_and_all(stack, osc_env):
    name, flavor_id = unique("osc-priv"), unique("id")
    openstack(stack, "flavor", "create", "--private", "--id", flavor_id, "--ram", "128", "--disk", "0", name,
              env=osc_env, version="2.75")

    def listed(*args: str) -> list[str]:
        return [f["ID"] for f in openstack_json(stack, "flavor", "list", *args, env=osc_env, version="2.75")]

    assert flavor_id not in listed()
    assert flavor_id in listed("--private")
    assert flavor_id in listed("--all")
    openstack(stack, "flavor", "delete", flavor_id, env=osc_env, version="2.75")


def test_openstack_flavor_set_description_needs_255(stack, osc_env):
    name, flavor_id = unique("osc-desc"), unique("id")
    openstack(stack, "flavor", "create", "--id", flavor_id, "--ram", "128", name, env=osc_env, version="2.55")
    openstack(stack, "flavor", "set", "--description", "changed", flavor_id, env=osc_env, version="2.55")
    assert server_flavor(stack, flavor_id)["description"] == "changed"
    openstack(stack, "flavor", "delete", flavor_id, env=osc_env)


# -- nova CLI (python-novaclient) --------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["2.1", "2.55", "2.75", None], ids=["2.1", "2.55", "2.75", "negotiated"])
def test_nova_flavor_create_list_show_delete(stack, version):
    name, flavor_id = unique("nova"), unique("id")
    out = parse_table(nova(stack, "flavor-create", name, flavor_id, "512", "5", "2", version=version).stdout)
    assert [(r["ID"], r["Name"], r["Memory_MiB"], r["Disk"], r["VCPUs"]) for r in out] == [
        (flavor_id, name, "512", "5", "2")]
    assert server_flavor(stack, flavor_id)["ram"] == 512

    rows = parse_table(nova(stack, "flavor-list", version=version).stdout)
    (row,) = [r for r in rows if r["ID"] == flavor_id]
    assert (row["Name"], row["Memory_MiB"], row["VCPUs"], row["Is_Public"]) == (name, "512", "2", "True")

    shown = {r["Property"]: r["Value"] for r in parse_table(nova(stack, "flavor-show", name,
                                                                 version=version).stdout)}
    assert (shown["id"], shown["name"], shown["ram"], shown["OS-FLV-DISABLED:disabled"]) == (
        flavor_id, name, "512", "False")

    nova(stack, "flavor-delete", flavor_id, version=version)
    assert server_flavor(stack, flavor_id) is None
    failed = nova(stack, "flavor-show", flavor_id, version=version, expect_rc=1)
    assert "No flavor with a name or ID of" in failed.stderr


def test_nova_flavor_create_auto_id_and_duplicate_name(stack):
    name = unique("nova-auto")
    out = parse_table(nova(stack, "flavor-create", name, "auto", "128", "0", "1").stdout)
    flavor_id = out[0]["ID"]
    assert str(uuid.UUID(flavor_id)) == flavor_id
    failed = nova(stack, "flavor-create", name, "auto", "128", "0", "1", expect_rc=1)
    assert f"Flavor with name {name} already exists. (HTTP 409)" in failed.stderr
    nova(stack, "flavor-delete", flavor_id)


# -- openstacksdk ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["2.1", "2.61", None], ids=["2.1", "2.61", "negotiated"])
def test_openstacksdk_create_list_find_delete(stack, sdk_env, version):
    kwargs = {"compute_api_version": version} if version else {}
    conn = openstacksdk.connect(auth_type="admin_token",
                                auth={"endpoint": stack.endpoint, "token": stack.admin_token},
                                load_yaml_config=False, load_envvars=False, **kwargs)
    name, flavor_id = unique("sdk"), unique("id")
    try:
        flavor = conn.compute.create_flavor(name=name, id=flavor_id, ram=1024, vcpus=2, disk=10,
                                            is_public=True)
        assert (flavor.id, flavor.name, flavor.ram, flavor.vcpus, flavor.disk) == (flavor_id, name, 1024, 2, 10)
        assert flavor_id in [f.id for f in conn.compute.flavors()]
        assert flavor_id in [f.id for f in conn.compute.flavors(details=False)]
        found = conn.compute.find_flavor(name)
        assert (found.id, found.is_disabled, found.is_public) == (flavor_id, False, True)
        assert conn.compute.find_flavor(unique("nothing")) is None
        conn.compute.delete_flavor(flavor_id)
        assert server_flavor(stack, flavor_id) is None
        if version != "2.1":
            # The cloud layer always sends "description" (null), which Nova accepts from 2.55 only;
            # without an id the server generates a UUID.
            cloud_flavor = conn.create_flavor(unique("sdk-cloud"), ram=128, vcpus=1, disk=0)
            assert str(uuid.UUID(cloud_flavor.id)) == cloud_flavor.id
            conn.delete_flavor(cloud_flavor.id)
            assert server_flavor(stack, cloud_flavor.id) is None
    finally:
        conn.close()


# -- tempest.lib FlavorsClient: tempest's response schemas validate our bodies --------------------------

def tempest_flavors_client(stack: Stack) -> FlavorsClient:
    return FlavorsClient(FixedAuthProvider(stack.endpoint, stack.admin_token), "compute", "RegionOne")


@pytest.mark.parametrize("version", [None, "2.54", "2.55", "2.60", "2.61", "2.75", "2.104"])
def test_tempest_flavors_client_schemas_validate(stack, version):
    client = tempest_flavors_client(stack)
    name, flavor_id = unique("tempest"), unique("id")
    with compute_microversion(version):
        created = client.create_flavor(name=name, id=flavor_id, ram=64, vcpus=1, disk=0, swap=0)["flavor"]
        assert created["id"] == flavor_id
        assert client.show_flavor(flavor_id)["flavor"]["name"] == name
        assert flavor_id in [f["id"] for f in client.list_flavors()["flavors"]]
        assert flavor_id in [f["id"] for f in client.list_flavors(detail=True)["flavors"]]
        page = client.list_flavors(detail=True, limit=1)
        assert len(page["flavors"]) == 1 and page["flavors_links"][0]["rel"] == "next"
        if version and version != "2.54":
            updated = client.update_flavor(flavor_id, description="by tempest")["flavor"]
            assert updated["description"] == "by tempest"
        client.delete_flavor(flavor_id)
        client.wait_for_resource_deletion(flavor_id)
        with pytest.raises(tempest_exc.NotFound):
            client.show_flavor(flavor_id)
        with pytest.raises(tempest_exc.Conflict):
            client.create_flavor(name=name, id=flavor_id, ram=64, vcpus=1, disk=0)
            client.create_flavor(name=name, id=flavor_id, ram=64, vcpus=1, disk=0)
        client.delete_flavor(flavor_id)
