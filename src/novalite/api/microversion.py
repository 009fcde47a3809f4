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
    Version(2, 11): "os-services: forced_down in the list and the force-down action",
    Version(2, 28): "os-hypervisors: cpu_info is an object, not JSON text",
    Version(2, 33): "os-hypervisors: limit/marker paging",
    Version(2, 53): "os-services, os-hypervisors: UUID ids, PUT /os-services/{service_id} (legacy actions "
                    "removed), hypervisor_hostname_pattern and with_servers (search and servers routes removed)",
    Version(2, 55): "flavors: description, PUT /flavors/{flavor_id}",
    Version(2, 61): "flavors: extra_specs in flavor bodies (policy permitting)",
    Version(2, 69): "os-services: partial records for services of down cells",
    Version(2, 75): "os-services, flavors, os-hypervisors: unknown query parameters are rejected; flavor swap 0, "
                    "not \"\"; hypervisor servers always present when asked for",
    Version(2, 88): "os-hypervisors: statistics fields, /statistics and /uptime removed; uptime in detail",
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
