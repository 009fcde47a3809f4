"""Version discovery documents (spec section 1.3)."""

from __future__ import annotations

from urllib.parse import urlsplit

from novalite.api.microversion import MAX_VERSION, MIN_VERSION
from novalite.api.wsgi import ApiRequest, Reply

V21_UPDATED = "2013-07-23T11:33:21Z"
V20_UPDATED = "2025-07-04T12:00:00Z"
MEDIA_BASE = "application/json"
MEDIA_TYPE = "application/vnd.openstack.compute+json;version={}"


def _prefix(req: ApiRequest) -> str:
    configured = req.app.settings.api.compute_link_prefix
    if configured:
        return configured.rstrip("/")
    parts = urlsplit(req.url)
    return f"{parts.scheme}://{parts.netloc}"


def _v21(prefix: str) -> dict:
    return {"id": "v2.1", "status": "CURRENT", "version": str(MAX_VERSION), "min_version": str(MIN_VERSION),
            "updated": V21_UPDATED, "links": [{"rel": "self", "href": f"{prefix}/v2.1/"}]}


def _v20(prefix: str) -> dict:
    return {"id": "v2.0", "status": "DEPRECATED", "version": "", "min_version": "",
            "updated": V20_UPDATED, "links": [{"rel": "self", "href": f"{prefix}/v2/"}]}


def _document(entry: dict, media_version: str) -> dict:
    links = [*entry["links"], {"rel": "describedby", "type": "text/html", "href": "http://docs.openstack.org/"}]
    return {"version": {**entry, "links": links,
                        "media-types": [{"base": MEDIA_BASE, "type": MEDIA_TYPE.format(media_version)}]}}


def list_versions(req: ApiRequest) -> Reply:
    prefix = _prefix(req)
    return Reply(200, {"versions": [_v20(prefix), _v21(prefix)]})


def show_v21(req: ApiRequest) -> Reply:
    return Reply(200, _document(_v21(_prefix(req)), "2.1"))


def show_v20(req: ApiRequest) -> Reply:
    return Reply(200, _document(_v20(_prefix(req)), "2"))


def multiple_choices(req: ApiRequest) -> Reply:
    """Any other path under the root: 300 with both versions at that path, as Nova's root app."""
    prefix = _prefix(req)
    path = urlsplit(req.url).path
    choices = []
    for entry, media_version, base in ((_v20(prefix), "2", "v2"), (_v21(prefix), "2.1", "v2.1")):
        choices.append({
            "id": entry["id"], "status": entry["status"],
            "links": [{"rel": "self", "href": f"{prefix}/{base}{path}"}],
            "media-types": [{"base": MEDIA_BASE, "type": MEDIA_TYPE.format(media_version)}],
        })
    return Reply(300, {"choices": choices})
