"""A small compute API client over a keystoneauth Adapter: os-services, servers, evacuate,
os-hypervisors and os-migrations.

The requests are the ones python-novaclient 18 sends (spec clients.md 1.2, 1.4): the legacy
``PUT /os-services/{enable,disable,disable-log-reason,force-down}`` with host and binary below 2.53,
``PUT /os-services/{uuid}`` from 2.53 on; the evacuate body of each microversion range; a host's
servers from ``/os-hypervisors/{host}/servers`` below 2.53 and from the ``hypervisor_hostname_pattern``
query from 2.53. Errors come back as ``ApiError`` carrying Nova's message.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qs, quote, urlsplit

from novalite.uuidutils import is_uuid_like

if TYPE_CHECKING:
    from keystoneauth1 import adapter as ks_adapter

DEFAULT_BINARY = "nova-compute"
_VERSION = re.compile(r"^([1-9]\d*)\.(\d+)$")


class ApiVersion(NamedTuple):
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def parse(cls, text: str) -> ApiVersion:
        match = _VERSION.match(text.strip())
        if not match:
            raise ValueError(f"invalid compute API version {text!r}: expected MAJOR.MINOR, e.g. 2.53")
        return cls(int(match.group(1)), int(match.group(2)))


MIN_VERSION = ApiVersion(2, 1)
# The highest microversion this client knows, as python-novaclient 18 (API_MAX_VERSION). Nothing
# after 2.75 changes os-services, so every version up to here is served the same way.
MAX_VERSION = ApiVersion(2, 96)
FORCE_DOWN_VERSION = ApiVersion(2, 11)  # forced_down and PUT /os-services/force-down
UUID_VERSION = ApiVersion(2, 53)  # UUID ids and PUT /os-services/{uuid}; the legacy actions are gone
# Evacuate bodies (spec clients.md 1.4): onSharedStorage until 2.13, force from 2.29 to 2.67.
EVACUATE_NO_SHARED_STORAGE = ApiVersion(2, 14)
EVACUATE_FORCE = ApiVersion(2, 29)
EVACUATE_NO_FORCE = ApiVersion(2, 68)
NETWORKS_REQUIRED = ApiVersion(2, 37)  # POST /servers needs "networks" ("auto", "none" or a list)
EMBEDDED_FLAVOR = ApiVersion(2, 47)  # a server's flavor is its boot-time copy, not {"id", "links"}
BOOT_HOST = ApiVersion(2, 74)  # POST /servers takes "host"

# novaclient's exception class names by status (novaclient/exceptions.py), used in error lines.
_ERROR_NAMES = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
                405: "MethodNotAllowed", 406: "NotAcceptable", 409: "Conflict", 413: "OverLimit",
                429: "RateLimit", 501: "HTTPNotImplemented"}


class ClientError(Exception):
    """A failure the client detected itself (no usable answer from the server)."""

    name = "CommandError"

    def __str__(self) -> str:
        return f"ERROR ({self.name}): {self.args[0]}"


class ApiError(ClientError):
    """An HTTP error from the compute API, with Nova's fault message."""

    def __init__(self, status: int, message: str, request_id: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.request_id = request_id
        self.name = _ERROR_NAMES.get(status, "ClientException")

    @property
    def detail(self) -> str:
        """novaclient's str() of its exception: the message, the status and the request id."""
        text = f"{self.message} (HTTP {self.status})"
        return f"{text} (Request-ID: {self.request_id})" if self.request_id else text

    def __str__(self) -> str:
        return f"ERROR ({self.name}): {self.detail}"


def fault_message(response: Any) -> str:
    """Nova's message from a fault body ``{"<faultName>": {"message": ...}}`` or a flat one."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body:
        first = next(iter(body.values()))
        if isinstance(first, dict) and "message" in first:
            return str(first["message"])
        if "message" in body:
            return str(body["message"])
    return response.reason or f"HTTP {response.status_code}"


def _next_marker(body: dict, links_key: str) -> str | None:
    """The marker of a paged listing's "next" link, if the server sent one."""
    for link in body.get(links_key) or ():
        if link.get("rel") == "next":
            markers = parse_qs(urlsplit(link.get("href", "")).query).get("marker")
            return markers[-1] if markers else None
    return None


class ComputeClient:
    """Compute API calls at one microversion (``version``) over a keystoneauth Adapter."""

    def __init__(self, adapter: ks_adapter.Adapter, version: ApiVersion = MIN_VERSION):
        self.adapter = adapter
        self.version = version

    # -- version discovery ---------------------------------------------------------------------------

    def supported_versions(self) -> tuple[ApiVersion, ApiVersion]:
        """(min, max) microversion from the endpoint's version document (keystoneauth discovery)."""
        data = self.adapter.get_endpoint_data()
        if data is None or not data.max_microversion:
            raise ClientError(f"the compute endpoint {self.adapter.get_endpoint()} serves no microversions")
        low = data.min_microversion or MIN_VERSION
        return ApiVersion(*low[:2]), ApiVersion(*data.max_microversion[:2])

    def negotiate(self, requested: ApiVersion | None) -> ApiVersion:
        """Settle ``self.version``: the requested one if the server serves it, else min(server max, ours)."""
        server_min, server_max = self.supported_versions()
        if requested is None:
            chosen = min(server_max, MAX_VERSION)
            if chosen < server_min:
                raise ClientError(f"the server serves compute API {server_min}–{server_max}; this client "
                                  f"knows {MIN_VERSION}–{MAX_VERSION}")
        else:
            if not server_min <= requested <= server_max:
                raise ClientError(f"compute API version {requested} was requested, but the server serves "
                                  f"{server_min} to {server_max}")
            chosen = requested
        self.version = chosen
        return chosen

    # -- HTTP ------------------------------------------------------------------------------------------

    def allow_parallel(self, requests_at_once: int) -> None:
        """Keep a connection per thread that sends requests at once (requests' pools keep 10 and
        discard the rest with a warning)."""
        from requests.adapters import DEFAULT_POOLSIZE, HTTPAdapter

        for transport in self.adapter.session.session.adapters.values():
            if isinstance(transport, HTTPAdapter):
                transport.init_poolmanager(DEFAULT_POOLSIZE, max(requests_at_once, DEFAULT_POOLSIZE))

    def _request(self, method: str, path: str, *, body: dict | None = None,
                 params: dict[str, str] | None = None) -> Any:
        response = self.adapter.request(
            path, method, json=body, params=params, raise_exc=False,
            microversion=str(self.version), headers={"Accept": "application/json"},
        )
        if response.status_code >= 400:
            request_id = response.headers.get("x-compute-request-id") or response.headers.get(
                "x-openstack-request-id")
            raise ApiError(response.status_code, fault_message(response), request_id)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # -- os-services ---------------------------------------------------------------------------------

    def list_services(self, host: str | None = None, binary: str | None = None) -> list[dict]:
        params = {key: value for key, value in (("host", host), ("binary", binary)) if value}
        return self._request("GET", "/os-services", params=params or None)["services"]

    def find_service(self, host: str, binary: str = DEFAULT_BINARY) -> dict:
        """The one service of host+binary, as openstackclient resolves it at 2.53 and later."""
        found = [s for s in self.list_services(host=host, binary=binary)
                 if s.get("host") == host and s.get("binary") == binary]
        if not found:
            raise ClientError(f'Compute service for host "{host}" and binary "{binary}" not found.')
        if len(found) > 1:
            raise ClientError(f'Multiple compute services found for host "{host}" and binary "{binary}".')
        return found[0]

    def service_id(self, host_or_id: str, binary: str | None) -> str:
        """A 2.53+ service UUID for a UUID, or for a host (+ binary) resolved by listing."""
        if is_uuid_like(host_or_id):
            return host_or_id
        return str(self.find_service(host_or_id, binary or DEFAULT_BINARY)["id"])

    def _update(self, host_or_id: str, binary: str | None, legacy_action: str, changes: dict) -> dict:
        if self.version >= UUID_VERSION:
            service_id = self.service_id(host_or_id, binary)
            return self._request("PUT", f"/os-services/{service_id}", body=changes)["service"]
        body = {"host": host_or_id, "binary": binary or DEFAULT_BINARY}
        if legacy_action == "force-down":
            body["forced_down"] = changes["forced_down"]
        elif legacy_action == "disable-log-reason":
            body["disabled_reason"] = changes["disabled_reason"]
        return self._request("PUT", f"/os-services/{legacy_action}", body=body)["service"]

    def force_down(self, host_or_id: str, binary: str | None = None, forced_down: bool = True) -> dict:
        if self.version < FORCE_DOWN_VERSION:
            raise ClientError(f"forcing a service down needs compute API version {FORCE_DOWN_VERSION} or "
                              f"later (this request would use {self.version}); pass "
                              f"--os-compute-api-version {FORCE_DOWN_VERSION}")
        return self._update(host_or_id, binary, "force-down", {"forced_down": forced_down})

    def enable(self, host_or_id: str, binary: str | None = None) -> dict:
        return self._update(host_or_id, binary, "enable", {"status": "enabled"})

    def disable(self, host_or_id: str, binary: str | None = None, reason: str | None = None) -> dict:
        if reason is None:
            return self._update(host_or_id, binary, "disable", {"status": "disabled"})
        return self._update(host_or_id, binary, "disable-log-reason",
                            {"status": "disabled", "disabled_reason": reason})

    def force_down_and_disable(self, host_or_id: str, reason: str, binary: str | None = None) -> dict:
        """forced_down=true, then disabled with ``reason``: from 2.53 one PUT that saves both at once (spec 3.4:
        status and forced_down are applied together), below two requests in that order (force-down first:
        a disable of a compute that is still up calls the compute, ha-anchors 4)."""
        if self.version >= UUID_VERSION:
            return self._update(host_or_id, binary, "force-down",
                                {"forced_down": True, "status": "disabled", "disabled_reason": reason})
        self.force_down(host_or_id, binary, forced_down=True)
        return self.disable(host_or_id, binary, reason=reason)

    def delete(self, service_id: str) -> None:
        self._request("DELETE", f"/os-services/{service_id}")

    # -- paging ------------------------------------------------------------------------------------

    def _list_all(self, path: str, key: str, params: dict[str, str] | None = None) -> list[dict]:
        """Every page of a listing, following its "<key>_links" next markers (a full page has one)."""
        params = dict(params or {})
        found: list[dict] = []
        while True:
            body = self._request("GET", path, params=params or None)
            found.extend(body[key])
            marker = _next_marker(body, f"{key}_links")
            if marker is None or not body[key] or marker == params.get("marker"):
                return found
            params["marker"] = marker

    # -- flavors -------------------------------------------------------------------------------------

    def find_flavor(self, name_or_id: str) -> dict:
        """A flavor by id, else by exact name among all flavors (public and private), as novaclient."""
        try:
            return self._request("GET", f"/flavors/{name_or_id}")["flavor"]
        except ApiError as error:
            if error.status != 404:
                raise
        found = [f for f in self._list_all("/flavors/detail", "flavors", {"is_public": "None"})
                 if f.get("name") == name_or_id]
        if len(found) > 1:
            raise ClientError(f"Multiple flavor matches found for '{name_or_id}', use an ID to be more specific.")
        if not found:
            raise ClientError(f"No flavor with a name or ID of '{name_or_id}' exists.")
        return found[0]

    # -- servers -------------------------------------------------------------------------------------

    def create_server(self, name: str, flavor_ref: str, *, image_ref: str | None = None,
                      availability_zone: str | None = None, metadata: dict[str, str] | None = None,
                      min_count: int = 1, max_count: int = 1, host: str | None = None) -> dict:
        """POST /servers; Nova answers with the first server only (id, links, maybe adminPass)."""
        server: dict[str, Any] = {"name": name, "flavorRef": flavor_ref, "min_count": min_count,
                                  "max_count": max_count}
        if image_ref:
            server["imageRef"] = image_ref
        if availability_zone:
            server["availability_zone"] = availability_zone
        if metadata:
            server["metadata"] = metadata
        if self.version >= NETWORKS_REQUIRED:
            server["networks"] = "none"  # novalite has no network service to allocate from
        if host is not None:
            if self.version < BOOT_HOST:
                raise ClientError(f"a requested host needs compute API version {BOOT_HOST} or later "
                                  f"(this session uses {self.version})")
            server["host"] = host
        return self._request("POST", "/servers", body={"server": server})["server"]

    def flavor_extra_specs(self, flavor_id: str) -> dict[str, str]:
        return self._request("GET", f"/flavors/{flavor_id}/os-extra_specs")["extra_specs"]

    def get_server(self, server_id: str) -> dict:
        return self._request("GET", f"/servers/{server_id}")["server"]

    def list_servers(self, **filters: str | None) -> list[dict]:
        """GET /servers/detail with Nova's filters (host, all_tenants, status, name, reservation_id, ...)."""
        params = {key: value for key, value in filters.items() if value is not None}
        return self._list_all("/servers/detail", "servers", params)

    def find_server(self, name_or_id: str, all_tenants: bool = False) -> dict:
        """A server by UUID, else by exact name (GET /servers?name=), as novaclient's find_resource."""
        if is_uuid_like(name_or_id):
            try:
                return self.get_server(name_or_id)
            except ApiError as error:
                if error.status != 404:
                    raise
        params = {"name": name_or_id, **({"all_tenants": "1"} if all_tenants else {})}
        found = [s for s in self._list_all("/servers", "servers", params) if s.get("name") == name_or_id]
        if len(found) > 1:
            raise ClientError(f"Multiple server matches found for '{name_or_id}', use an ID to be more specific.")
        if not found:
            raise ClientError(f"No server with a name or ID of '{name_or_id}' exists.")
        return self.get_server(found[0]["id"])

    def delete_server(self, server_id: str) -> None:
        self._request("DELETE", f"/servers/{server_id}")

    def _action(self, server_id: str, body: dict) -> Any:
        return self._request("POST", f"/servers/{server_id}/action", body=body)

    def stop_server(self, server_id: str) -> None:
        self._action(server_id, {"os-stop": None})

    def start_server(self, server_id: str) -> None:
        self._action(server_id, {"os-start": None})

    def evacuate_body(self, host: str | None = None, *, force: bool = False, password: str | None = None,
                      on_shared_storage: bool = False) -> dict:
        """novaclient's body for this microversion (spec clients.md 1.4)."""
        if force and not EVACUATE_FORCE <= self.version < EVACUATE_NO_FORCE:
            raise ClientError(f"--force needs compute API version {EVACUATE_FORCE} to 2.67 "
                              f"(this session uses {self.version})")
        if on_shared_storage and self.version >= EVACUATE_NO_SHARED_STORAGE:
            raise ClientError(f"--on-shared-storage needs compute API version 2.13 or earlier "
                              f"(this session uses {self.version})")
        body: dict[str, Any] = {}
        if self.version < EVACUATE_NO_SHARED_STORAGE:
            body["onSharedStorage"] = on_shared_storage  # always sent before 2.14
        if host is not None:
            body["host"] = host
        if password is not None:
            body["adminPass"] = password
        if force:
            body["force"] = True
        return {"evacuate": body}

    def evacuate(self, server_id: str, host: str | None = None, *, force: bool = False,
                 password: str | None = None, on_shared_storage: bool = False) -> dict | None:
        """POST /servers/{id}/action evacuate; before 2.14 Nova answers {"adminPass": ...}."""
        body = self.evacuate_body(host, force=force, password=password, on_shared_storage=on_shared_storage)
        return self._action(server_id, body)

    # -- os-hypervisors ------------------------------------------------------------------------------

    def list_hypervisors(self, matching: str | None = None) -> list[dict]:
        """GET /os-hypervisors; with ``matching``, the hostname search of this microversion."""
        if matching is None:
            return self._list_all("/os-hypervisors", "hypervisors")
        return self._search_hypervisors(matching, with_servers=False)

    def list_hypervisors_detail(self) -> list[dict]:
        """GET /os-hypervisors/detail, every page (capacity and use up to 2.87, the service's host)."""
        return self._list_all("/os-hypervisors/detail", "hypervisors")

    def _search_hypervisors(self, pattern: str, *, with_servers: bool) -> list[dict]:
        if self.version >= UUID_VERSION:
            params = {"hypervisor_hostname_pattern": pattern}
            if with_servers:
                params["with_servers"] = "True"
            return self._request("GET", "/os-hypervisors", params=params)["hypervisors"]
        target = "servers" if with_servers else "search"
        return self._request("GET", f"/os-hypervisors/{quote(pattern, safe='')}/{target}")["hypervisors"]

    def hypervisor_servers(self, pattern: str, strict: bool = False) -> list[tuple[dict, dict]]:
        """(hypervisor, server) of every server on the hypervisors matching ``pattern`` (host-evacuate's
        search); ``strict``: only the hypervisor named exactly ``pattern``, else novaclient's 404."""
        found = []
        for hypervisor in self._search_hypervisors(pattern, with_servers=True):
            if strict and hypervisor.get("hypervisor_hostname") != pattern:
                continue
            found.extend((hypervisor, server) for server in hypervisor.get("servers") or ())
            if strict:
                return found
        if strict:
            raise ApiError(404, f"No hypervisor matching '{pattern}' could be found.")
        return found

    # -- os-migrations -------------------------------------------------------------------------------

    def list_migrations(self, **filters: str | None) -> list[dict]:
        """GET /os-migrations with Nova's filters (host, status, instance_uuid, migration_type, ...)."""
        params = {key: value for key, value in filters.items() if value is not None}
        return self._list_all("/os-migrations", "migrations", params)
