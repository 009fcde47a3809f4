"""Resource links as Nova's view builders write them (nova/api/openstack/common.py ViewBuilder).

``self`` points into the versioned endpoint (…/v2.1/[project/]flavors/1), ``bookmark`` into the
unversioned one (…/[project/]flavors/1); ``[api]compute_link_prefix`` replaces scheme and host and
is put in front of the path. The project id appears only when the URL carried the caller's project.
"""

from __future__ import annotations

from urllib.parse import urlencode, urlsplit, urlunsplit

from novalite.api.wsgi import ApiRequest

API_ROOT = "/v2.1"


def url_join(*parts: str) -> str:
    """Nova's url_join: parts stripped of slashes, empty parts skipped."""
    return "/".join(part.strip("/") for part in parts if part)


def _with_prefix(url: str, prefix: str) -> str:
    if not prefix:
        return url
    url_parts = list(urlsplit(url))
    prefix_parts = urlsplit(prefix)
    url_parts[0:2] = prefix_parts[0:2]
    url_parts[2] = prefix_parts[2] + url_parts[2]
    return urlunsplit(url_parts).rstrip("/")


def _project_id(req: ApiRequest) -> str:
    project_id = req.context.project_id if req.context else None
    return project_id if project_id and project_id in req.url else ""


def _roots(req: ApiRequest) -> tuple[str, str]:
    """(versioned, unversioned) roots of the compute API for this request."""
    parts = urlsplit(req.url)
    host = f"{parts.scheme}://{parts.netloc}"
    prefix = req.app.settings.api.compute_link_prefix
    return _with_prefix(host + API_ROOT, prefix), _with_prefix(host, prefix)


def resource_links(req: ApiRequest, collection: str, identifier: str) -> list[dict]:
    versioned, unversioned = _roots(req)
    project_id = _project_id(req)
    return [
        {"rel": "self", "href": url_join(versioned, project_id, collection, str(identifier))},
        {"rel": "bookmark", "href": url_join(unversioned, project_id, collection, str(identifier))},
    ]


def collection_links(req: ApiRequest, query: dict[str, list[str]], collection: str,
                     last_id: str | None, count: int) -> list[dict]:
    """The "next" link, present when the page is full (``limit`` items, or [api]max_limit)."""
    max_limit = req.app.settings.api.max_limit
    max_items = min(int(query.get("limit", [max_limit])[-1]), max_limit)
    if not max_items or max_items != count or last_id is None:
        return []
    # Nova sorts the (name, value) pairs and keeps the last value of a repeated name.
    params = dict(sorted((name, value) for name, values in query.items() for value in values))
    params["marker"] = last_id
    versioned, _unversioned = _roots(req)
    url = url_join(versioned, _project_id(req), collection)
    return [{"rel": "next", "href": f"{url}?{urlencode(params)}"}]
