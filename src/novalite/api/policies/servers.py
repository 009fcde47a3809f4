"""Server policy rules, named and defaulted as in nova/policies/servers.py and
extended_server_attributes.py (only the rules the servers resource checks).

Checked quietly (no 403, just fewer keys or filters): show:flavor-extra-specs, show:host_status,
show:host_status:unknown-only, allow_all_filters and os-extended-server-attributes.
"""

from oslo_policy import policy

SERVERS = "os_compute_api:servers:%s"
INDEX = SERVERS % "index"
DETAIL = SERVERS % "detail"
INDEX_ALL_TENANTS = SERVERS % "index:get_all_tenants"
DETAIL_ALL_TENANTS = SERVERS % "detail:get_all_tenants"
ALLOW_ALL_FILTERS = SERVERS % "allow_all_filters"
SHOW = SERVERS % "show"
SHOW_FLAVOR_EXTRA_SPECS = SERVERS % "show:flavor-extra-specs"
SHOW_HOST_STATUS = SERVERS % "show:host_status"
SHOW_HOST_STATUS_UNKNOWN_ONLY = SERVERS % "show:host_status:unknown-only"
CREATE = SERVERS % "create"
CREATE_FORCED_HOST = SERVERS % "create:forced_host"
# Not under os_compute_api: Nova named it this way when 2.74 added host/hypervisor_hostname.
REQUESTED_DESTINATION = "compute:servers:create:requested_destination"
CREATE_ATTACH_NETWORK = SERVERS % "create:attach_network"
CREATE_TRUSTED_CERTS = SERVERS % "create:trusted_certs"
ZERO_DISK_FLAVOR = SERVERS % "create:zero_disk_flavor"
DELETE = SERVERS % "delete"
START = SERVERS % "start"
STOP = SERVERS % "stop"
EXTENDED_ATTRIBUTES = "os_compute_api:os-extended-server-attributes"

ADMIN = "rule:context_is_admin"
READER = "rule:project_reader_or_admin"
MEMBER = "rule:project_member_or_admin"

_GET_SERVER = {"method": "GET", "path": "/servers/{server_id}"}
_GET_DETAIL = {"method": "GET", "path": "/servers/detail"}
_GET_LIST = {"method": "GET", "path": "/servers"}
_POST_SERVERS = {"method": "POST", "path": "/servers"}


def _rule(name: str, check_str: str, description: str, *operations: dict) -> policy.DocumentedRuleDefault:
    return policy.DocumentedRuleDefault(name=name, check_str=check_str, description=description,
                                        operations=list(operations), scope_types=["project"])


rules = [
    _rule(INDEX, READER, "List all servers", _GET_LIST),
    _rule(DETAIL, READER, "List all servers with detailed information", _GET_DETAIL),
    _rule(INDEX_ALL_TENANTS, ADMIN, "List all servers for all projects", _GET_LIST),
    _rule(DETAIL_ALL_TENANTS, ADMIN, "List all servers with detailed information for  all projects",
          _GET_DETAIL),
    _rule(ALLOW_ALL_FILTERS, ADMIN, "Allow all filters when listing servers", _GET_LIST, _GET_DETAIL),
    _rule(SHOW, READER, "Show a server", _GET_SERVER),
    _rule(SHOW_FLAVOR_EXTRA_SPECS, READER,
          "Starting with microversion 2.47, the flavor and its extra specs used for a server is also returned "
          "in the response when showing server details, updating a server or rebuilding a server.",
          _GET_DETAIL, _GET_SERVER),
    _rule(SHOW_HOST_STATUS, ADMIN, "Show a server with additional host status information.",
          _GET_SERVER, _GET_DETAIL),
    _rule(SHOW_HOST_STATUS_UNKNOWN_ONLY, ADMIN,
          "Show a server with additional host status information, only if host status is UNKNOWN.",
          _GET_SERVER, _GET_DETAIL),
    _rule(CREATE, MEMBER, "Create a server", _POST_SERVERS),
    _rule(CREATE_FORCED_HOST, ADMIN, "Create a server on the specified host and/or node.", _POST_SERVERS),
    _rule(REQUESTED_DESTINATION, ADMIN,
          "Create a server on the requested compute service host and/or hypervisor_hostname.", _POST_SERVERS),
    _rule(CREATE_ATTACH_NETWORK, MEMBER, "Create a server with the requested network attached  to it",
          _POST_SERVERS),
    _rule(CREATE_TRUSTED_CERTS, MEMBER, "Create a server with trusted image certificate IDs", _POST_SERVERS),
    _rule(ZERO_DISK_FLAVOR, ADMIN,
          "This rule controls the compute API validation behavior of creating a server with a flavor that has "
          "0 disk, indicating the server should be volume-backed.", _POST_SERVERS),
    _rule(DELETE, MEMBER, "Delete a server", {"method": "DELETE", "path": "/servers/{server_id}"}),
    _rule(START, MEMBER, "Start a server", {"method": "POST", "path": "/servers/{server_id}/action (os-start)"}),
    _rule(STOP, MEMBER, "Stop a server", {"method": "POST", "path": "/servers/{server_id}/action (os-stop)"}),
    _rule(EXTENDED_ATTRIBUTES, ADMIN, "Return extended attributes for server.", _GET_SERVER, _GET_DETAIL),
]
