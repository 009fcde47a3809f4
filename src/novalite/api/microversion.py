"""Compute API microversions: parsing the request headers and the version history as data.

Spec section 1.1–1.2. The history lists every microversion at which a resource novalite serves
changes; every version between MIN and MAX is honoured (those not listed change nothing we serve).
"""

from __future__ import annotations

import functools
import re
from typing import NamedTuple

from novalite.exceptions import BadRequest, NotAcceptable

SERVICE_TYPE = "compute"
NEW_HEADER = "OpenStack-API-Version"
LEGACY_HEADER = "X-OpenStack-Nova-API-Version"
_FORMAT = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


class Version(NamedTuple):
    major: int
    minor: int

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def parse(cls, text: str) -> Version:
        match = _FORMAT.match(text)
        if not match:
            raise BadRequest(
                f"API Version String {text} is of invalid format. Must be of format MajorNum.MinorNum."
            )
        return cls(int(match.group(1)), int(match.group(2)))


MIN_VERSION = Version(2, 1)
MAX_VERSION = Version(2, 104)

# The microversions at which something novalite serves changes (Nova's rest_api_version_history).
HISTORY: dict[Version, str] = {
    Version(2, 3): "servers: more OS-EXT-SRV-ATTR attributes (reservation_id, launch_index, hostname, user_data...)",
    Version(2, 9): "servers: locked",
    Version(2, 11): "os-services: forced_down in the list and the force-down action",
    Version(2, 14): "evacuate: onSharedStorage removed; the response no longer carries adminPass",
    Version(2, 16): "servers: host_status (policy permitting)",
    Version(2, 19): "servers: description",
    Version(2, 21): "os-instance-actions: a deleted server's actions can be read",
    Version(2, 23): "os-migrations: migration_type, and links on live migrations in progress",
    Version(2, 26): "servers: tags, and the tag list filters",
    Version(2, 28): "os-hypervisors: cpu_info is an object, not JSON text",
    Version(2, 29): "evacuate: force (the given host without the scheduler's filters)",
    Version(2, 33): "os-hypervisors: limit/marker paging",
    Version(2, 37): "servers: networks required on create (a list, \"none\" or \"auto\")",
    Version(2, 38): "servers: an unknown status filter is a 400",
    Version(2, 47): "servers: the flavor embedded in the server, not linked",
    Version(2, 51): "os-instance-actions: events for everyone who may show the action (the traceback for admins)",
    Version(2, 53): "os-services, os-hypervisors: UUID ids, PUT /os-services/{service_id} (legacy actions "
                    "removed), hypervisor_hostname_pattern and with_servers (search and servers routes removed)",
    Version(2, 52): "servers: tags on create",
    Version(2, 55): "flavors: description, PUT /flavors/{flavor_id}",
    Version(2, 57): "servers: personality removed from create",
    Version(2, 58): "os-instance-actions: updated_at, limit/marker paging, changes-since",
    Version(2, 59): "os-migrations: uuid, newest first, limit/marker paging, changes-since; unknown parameters refused",
    Version(2, 61): "flavors: extra_specs in flavor bodies (policy permitting)",
    Version(2, 62): "os-instance-actions: hostId in events (and host, for admins)",
    Version(2, 63): "servers: trusted_image_certificates",
    Version(2, 66): "os-migrations, os-instance-actions, servers: changes-before",
    Version(2, 68): "evacuate: force removed",
    Version(2, 69): "os-services: partial records for services of down cells",
    Version(2, 71): "servers: server_groups in GET /servers/{server_id}",
    Version(2, 73): "servers: locked_reason; locked as a filter and sort key",
    Version(2, 74): "servers: host and hypervisor_hostname on create (admins)",
    Version(2, 75): "os-services, flavors, os-hypervisors, servers: unknown query parameters are rejected; "
                    "flavor swap 0, not \"\"; hypervisor servers always present when asked for",
    Version(2, 80): "os-migrations: user_id and project_id, as keys and filters",
    Version(2, 84): "os-instance-actions: details in events (admins)",
    Version(2, 88): "os-hypervisors: statistics fields, /statistics and /uptime removed; uptime in detail",
    Version(2, 90): "servers: hostname on create; OS-EXT-SRV-ATTR:hostname shown to everyone",
    Version(2, 94): "servers: hostname may be a fully qualified name",
    Version(2, 95): "evacuate: the server ends stopped on its destination (computes at service version 62 or later)",
    Version(2, 96): "servers: pinned_availability_zone",
    Version(2, 98): "servers: the image's properties in the server",
    Version(2, 100): "servers: scheduler_hints",
    Version(2, 102): "servers: GET /servers/{server_id} rejects unknown query parameters",
}


@functools.cache
def v(text: str) -> Version:
    """A Version from a literal like "2.53" (for tables and comparisons)."""
    major, minor = text.split(".")
    return Version(int(major), int(minor))


def requested_version_text(headers: dict[str, str]) -> str | None:
    """The raw version the client asked for, by microversion-parse's rules (spec 1.1).

    ``headers`` maps lower-cased header names to values.
    """
    new = headers.get(NEW_HEADER.lower())
    if new:
        for entry in reversed(new.split(",")):
            parts = entry.strip().split(None, 1)
            if len(parts) == 2 and parts[0].lower() == SERVICE_TYPE:
                return parts[1].strip()
    legacy = headers.get(LEGACY_HEADER.lower())
    if legacy:
        return legacy.split(",")[-1].strip()
    return None


def negotiate(headers: dict[str, str]) -> Version:
    """The version a request runs at: 400 if malformed, 406 (with the version kept) if out of range."""
    text = requested_version_text(headers)
    if text is None:
        return MIN_VERSION
    if text == "latest":
        return MAX_VERSION
    version = Version.parse(text)
    if not MIN_VERSION <= version <= MAX_VERSION:
        raise VersionNotSupported(version)
    return version


class VersionNotSupported(NotAcceptable):
    def __init__(self, version: Version):
        super().__init__(
            f"Version {version} is not supported by the API. "
            f"Minimum is {MIN_VERSION} and maximum is {MAX_VERSION}."
        )
        self.version = version


def response_headers(version: Version) -> list[tuple[str, str]]:
    """Both version headers and the two separate Vary lines (spec 1.2)."""
    return [
        (NEW_HEADER, f"{SERVICE_TYPE} {version}"),
        (LEGACY_HEADER, str(version)),
        ("Vary", NEW_HEADER),
        ("Vary", LEGACY_HEADER),
    ]
