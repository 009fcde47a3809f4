"""A small compute API client for os-services, over a keystoneauth Adapter.

The requests are the ones python-novaclient 18 sends (spec clients.md 1.2): the legacy
``PUT /os-services/{enable,disable,disable-log-reason,force-down}`` with host and binary below 2.53,
``PUT /os-services/{uuid}`` from 2.53 on. Errors come back as ``ApiError`` carrying Nova's message.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, NamedTuple

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

    def __str__(self) -> str:
        text = f"ERROR ({self.name}): {self.message} (HTTP {self.status})"
        return f"{text} (Request-ID: {self.request_id})" if self.request_id else text


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


class ComputeClient:
    """os-services calls at one microversion (``version``) over a keystoneauth Adapter."""

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

    def delete(self, service_id: str) -> None:
        self._request("DELETE", f"/os-services/{service_id}")
