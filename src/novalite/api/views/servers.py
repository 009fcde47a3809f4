"""Server bodies as Nova's views/servers.py builds them, at every microversion.

- create: id, links, OS-DCF:diskConfig, security_groups (the handler adds adminPass);
- brief (GET /servers): id, name, links;
- full (GET /servers/{id}, /servers/detail): Nova's show view. By microversion: 2.3 more
  OS-EXT-SRV-ATTR keys and delete_on_termination, 2.9 locked, 2.16 host_status, 2.19 description,
  2.26 tags, 2.47 the flavor embedded instead of linked, 2.63 trusted_image_certificates, 2.71
  server_groups (show only), 2.73 locked_reason, 2.90 OS-EXT-SRV-ATTR:hostname for everyone,
  2.96 pinned_availability_zone, 2.98 image properties, 2.100 scheduler_hints.

What a caller may see beyond that is decided once per request (ViewPolicy): the OS-EXT-SRV-ATTR keys
(os-extended-server-attributes), host_status (show:host_status, or only UNKNOWN ones with
show:host_status:unknown-only), flavor extra specs (show:flavor-extra-specs) and fault details (admins,
or any fault that is not a 500).

novalite has no networking, volumes, images, tags, server groups or trusted certificates: addresses and
volumes_attached are empty, security_groups is left out of shown servers (Nova adds it only for servers
with ports), tags and server_groups are [], the image properties and scheduler hints {}.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlalchemy import Row

from novalite.api import links
from novalite.api.microversion import v
from novalite.api.wsgi import ApiRequest
from novalite.domain import states
from novalite.domain.servers import instance_name
from novalite.timeutils import as_datetime, isotime

COLLECTION = "servers"
V2_3, V2_9, V2_16, V2_19, V2_26, V2_47 = v("2.3"), v("2.9"), v("2.16"), v("2.19"), v("2.26"), v("2.47")
V2_63, V2_73, V2_90, V2_96, V2_98, V2_100 = v("2.63"), v("2.73"), v("2.90"), v("2.96"), v("2.98"), v("2.100")
# Statuses that show "progress", and those that show the server's fault.
PROGRESS_STATUSES = ("ACTIVE", "BUILD", "REBUILD", "RESIZE", "VERIFY_RESIZE", "MIGRATING")
FAULT_STATUSES = ("ERROR", "DELETED")
HOST_STATUS_UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class ViewPolicy:
    """What this caller may see, by policy (checked once per request)."""

    extended_attributes: bool = False
    host_status: bool = False  # any host_status
    host_status_unknown_only: bool = False  # only host_status UNKNOWN
    flavor_extra_specs: bool = False
    fault_details: bool = False  # admins see a 500 fault's details
    server_groups: bool = False  # GET /servers/{id} from 2.71, not the detail list


@dataclass(frozen=True)
class ServerFacts:
    """What a full view needs besides the instance row."""

    metadata: dict[str, str]
    fault: Row | None = None
    host_status: str | None = None  # "" when the server has no host


def _created_time(value) -> str | None:
    """Nova's utils.isotime: seconds and "Z"."""
    value = as_datetime(value)
    return None if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def server_links(req: ApiRequest, uuid: str) -> list[dict]:
    return links.resource_links(req, COLLECTION, uuid)


def self_href(req: ApiRequest, uuid: str) -> str:
    return server_links(req, uuid)[0]["href"]


def _bookmark(req: ApiRequest, collection: str, identifier: str) -> list[dict]:
    return [link for link in links.resource_links(req, collection, identifier) if link["rel"] == "bookmark"]


def host_id(row: Row) -> str:
    """Nova's generate_hostid: the host, hashed with the project so projects cannot compare hosts."""
    if not row.host:
        return ""
    return hashlib.sha224((str(row.project_id) + row.host).encode()).hexdigest()


def status(row: Row) -> str:
    return "DELETED" if row.deleted else states.status_of(row.vm_state, row.task_state)


# -- create and brief --------------------------------------------------------------------------------

def create_view(req: ApiRequest, row: Row, security_groups: list[dict]) -> dict:
    return {"id": row.uuid, "links": server_links(req, row.uuid), "OS-DCF:diskConfig": "MANUAL",
            "security_groups": security_groups}


def brief_view(req: ApiRequest, row: Row) -> dict:
    return {"id": row.uuid, "name": row.display_name, "links": server_links(req, row.uuid)}


# -- full ---------------------------------------------------------------------------------------------

def _image(req: ApiRequest, row: Row) -> dict | str:
    if not row.image_ref:
        return ""
    image_id = row.image_ref.rstrip("/").rsplit("/", 1)[-1]
    image: dict = {"id": image_id, "links": _bookmark(req, "images", image_id)}
    if req.version >= V2_98:
        image["properties"] = {}  # no image service, so no image properties kept
    return image


def _flavor(req: ApiRequest, row: Row, extra_specs: bool) -> dict:
    flavor = json.loads(row.flavor) if row.flavor else None
    if not flavor:
        return {}
    if req.version < V2_47:
        return {"id": str(flavor["flavorid"]), "links": _bookmark(req, "flavors", str(flavor["flavorid"]))}
    view = {"vcpus": flavor["vcpus"], "ram": flavor["memory_mb"], "disk": flavor["root_gb"],
            "ephemeral": flavor["ephemeral_gb"], "swap": flavor["swap"], "original_name": flavor["name"]}
    if extra_specs:
        view["extra_specs"] = flavor.get("extra_specs") or {}
    return view


def _fault(row: Row | None, details: bool) -> dict | None:
    if row is None:
        return None
    fault = {"code": row.code, "created": _created_time(row.created_at), "message": row.message or ""}
    if row.details and (details or row.code != 500):
        fault["details"] = row.details
    return fault


def _zone(req: ApiRequest, row: Row) -> str:
    """Nova's get_instance_availability_zone: the host's zone once placed (novalite has no aggregates, so
    the default zone), else the zone asked for."""
    if row.host:
        return req.app.settings.DEFAULT.default_availability_zone
    return row.availability_zone or ""


def _extended_attributes(req: ApiRequest, row: Row) -> dict:
    view = {"OS-EXT-SRV-ATTR:host": row.host, "OS-EXT-SRV-ATTR:instance_name": instance_name(row),
            "OS-EXT-SRV-ATTR:hypervisor_hostname": row.node}
    if req.version >= V2_3:
        view.update({
            "OS-EXT-SRV-ATTR:reservation_id": row.reservation_id, "OS-EXT-SRV-ATTR:launch_index": row.launch_index,
            "OS-EXT-SRV-ATTR:hostname": row.hostname, "OS-EXT-SRV-ATTR:kernel_id": "",
            "OS-EXT-SRV-ATTR:ramdisk_id": "", "OS-EXT-SRV-ATTR:root_device_name": None,
            "OS-EXT-SRV-ATTR:user_data": row.user_data,
        })
    return view


def full_view(req: ApiRequest, row: Row, facts: ServerFacts, policy: ViewPolicy) -> dict:
    """One server as GET /servers/{id} and /servers/detail show it, keys in Nova's order."""
    server_status = status(row)
    view: dict = {
        "id": row.uuid,
        "name": row.display_name,
        "status": server_status,
        "tenant_id": row.project_id or "",
        "user_id": row.user_id or "",
        "metadata": facts.metadata,
        "hostId": host_id(row),
        "image": _image(req, row),
        "flavor": _flavor(req, row, policy.flavor_extra_specs),
        "created": _created_time(row.created_at),
        "updated": _created_time(row.updated_at or row.created_at),
        "addresses": {},
        "accessIPv4": row.access_ip_v4 or "",
        "accessIPv6": row.access_ip_v6 or "",
        "links": server_links(req, row.uuid),
        "OS-DCF:diskConfig": "MANUAL",
    }
    if server_status in FAULT_STATUSES:
        fault = _fault(facts.fault, policy.fault_details)
        if fault:
            view["fault"] = fault
    if server_status in PROGRESS_STATUSES:
        view["progress"] = row.progress or 0
    view["OS-EXT-AZ:availability_zone"] = _zone(req, row)
    view["config_drive"] = row.config_drive or ""
    view["key_name"] = row.key_name
    view["OS-SRV-USG:launched_at"] = isotime(as_datetime(row.launched_at))
    view["OS-SRV-USG:terminated_at"] = isotime(as_datetime(row.terminated_at))
    if policy.extended_attributes:
        view.update(_extended_attributes(req, row))
    view["OS-EXT-STS:task_state"] = row.task_state
    view["OS-EXT-STS:vm_state"] = row.vm_state
    view["OS-EXT-STS:power_state"] = row.power_state
    view["os-extended-volumes:volumes_attached"] = []
    if req.version >= V2_16 and facts.host_status is not None:
        if policy.host_status or (policy.host_status_unknown_only and facts.host_status == HOST_STATUS_UNKNOWN):
            view["host_status"] = facts.host_status
    if req.version >= V2_9:
        view["locked"] = bool(row.locked or row.locked_by)
    if req.version >= V2_73:
        view["locked_reason"] = None
    if req.version >= V2_19:
        view["description"] = row.display_description
    if req.version >= V2_26:
        view["tags"] = []
    if req.version >= V2_63:
        view["trusted_image_certificates"] = None
    if policy.server_groups:
        view["server_groups"] = []
    if req.version >= V2_90:
        view["OS-EXT-SRV-ATTR:hostname"] = row.hostname
    if req.version >= V2_96:
        view["pinned_availability_zone"] = row.requested_availability_zone
    if req.version >= V2_100:
        view["scheduler_hints"] = {}
    return view
