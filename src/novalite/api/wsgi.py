"""The request pipeline of every routed endpoint, in Nova's order (spec sections 1 and 2).

For compute API routes: microversion (400/406) → Content-Type (415) → method at this version
(404 fault) → JSON body (400) → URL project_id check (400) → the handler, whose NovaErrors become
Nova fault bodies. Unknown paths and methods get the router's bare 404, as in Nova.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

import falcon
import orjson

from novalite.api import faults, microversion
from novalite.api.microversion import Version, v
from novalite.api.policy import Context
from novalite.exceptions import BadRequest, NotFound, NovaError, UnsupportedMediaType

LOG = logging.getLogger(__name__)

JSON_TYPES = ("application/json", "application/vnd.openstack.compute+json")
NO_TYPE = ("", "text/plain")
METHODS_WITH_BODY = ("POST", "PUT")
# Every method Falcon knows (HTTP and WebDAV), so none of them can reach Falcon's 405 responder.
HTTP_METHODS = tuple(m for m in falcon.constants.COMBINED_METHODS if m != "WEBSOCKET")


@dataclass
class Versioned:
    """A handler served only from ``low`` to ``high`` (inclusive; "" leaves a side open)."""

    low: str
    high: str
    handler: Callable

    def serves(self, version: Version) -> bool:
        return (not self.low or version >= v(self.low)) and (not self.high or version <= v(self.high))


@dataclass
class ApiRequest:
    """What a handler sees: the caller, the version, the body, route and query parameters."""

    context: Context | None
    version: Version
    body: Any
    params: dict[str, str]
    query: dict[str, list[str]] | None  # None: the query string is not UTF-8
    app: Any  # novalite.api.app.Application: domain objects, enforcer, settings
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    request_id: str | None = None  # the x-openstack-request-id of this request (recorded with instance actions)


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    empty: bool = False  # True: no body at all (204, or Nova's 200 with no body)
    headers: dict[str, str] = field(default_factory=dict)  # e.g. Location of a created server


def headers_of(req: falcon.Request) -> dict[str, str]:
    return {k.lower(): val for k, val in req.headers.items()}


def set_fault(resp: falcon.Response, code: int, message: str) -> None:
    resp.status = code
    resp.content_type = faults.FAULT_CONTENT_TYPE
    resp.data = faults.fault_body(code, message)


def set_bare_not_found(req: falcon.Request, resp: falcon.Response) -> None:
    content_type, body = faults.bare_not_found(req.get_header("Accept"))
    resp.status = 404
    resp.content_type = content_type
    resp.data = body


def set_reply(resp: falcon.Response, reply: Reply) -> None:
    resp.status = reply.status
    for name, value in reply.headers.items():
        resp.set_header(name, value)
    if reply.empty or reply.status == 204:
        resp.data = b""
        return
    resp.content_type = "application/json"
    resp.data = orjson.dumps(reply.body)


def unexpected_error(resp: falcon.Response, error: Exception) -> None:
    LOG.exception("Unexpected API error")
    set_fault(resp, 500, faults.unexpected_error_message(error))


def _read_body(req: falcon.Request) -> bytes:
    # Nova checks a Content-Type header whenever one is sent, body or not, but reads a body
    # only for POST and PUT (other methods' bodies are ignored, even if they are not JSON).
    if req.content_type is not None:
        content_type = req.content_type.split(";")[0].strip().lower()
        if content_type not in JSON_TYPES and content_type not in NO_TYPE:
            raise UnsupportedMediaType("Unsupported Content-Type")
    if req.method not in METHODS_WITH_BODY:
        return b""
    return req.bounded_stream.read() if (req.content_length or 0) > 0 else b""


def _parse_json(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise BadRequest("Malformed request body") from None


def _query(req: falcon.Request) -> dict[str, list[str]] | None:
    """The query string as webob parses it for Nova (``&`` or ``;``, blanks kept), or None when it
    is not UTF-8; validate_query turns None into Nova's 400 (spec 3.2)."""
    query: dict[str, list[str]] = {}
    try:
        raw = req.query_string.encode("latin-1")  # PEP 3333: the bytes as received
    except UnicodeEncodeError:
        raw = req.query_string.encode()  # a caller that already decoded the text
    raw = raw.replace(b"+", b" ")
    for pair in re.split(rb"[&;]", raw):
        if not pair:
            continue
        name, _sep, value = pair.partition(b"=")
        try:
            key, text = unquote_to_bytes(name).decode(), unquote_to_bytes(value).decode()
        except UnicodeDecodeError:
            return None
        query.setdefault(key, []).append(text)
    return query


class ComputeEndpoint:
    """One path of the compute API: its handlers by method, each plain or microversioned."""

    def __init__(self, app: Any, methods: dict[str, Callable | list[Versioned]]):
        self.app = app
        self.methods = methods

    def _handler_for(self, method: str, version: Version) -> Callable:
        entry = self.methods[method]
        if callable(entry):
            return entry
        for choice in entry:
            if choice.serves(version):
                return choice.handler
        # A matched route not served at this version: Nova's 404 fault, with version headers.
        raise NotFound("The resource could not be found.")

    def dispatch(self, req: falcon.Request, resp: falcon.Response, params: dict[str, str]) -> None:
        method = req.method
        if method not in self.methods:
            set_bare_not_found(req, resp)
            return
        headers = headers_of(req)
        try:
            version = microversion.negotiate(headers)
        except microversion.VersionNotSupported as error:
            req.context.version = error.version
            set_fault(resp, error.code, error.message)
            return
        except NovaError as error:
            set_fault(resp, error.code, error.message)
            return
        req.context.version = version
        try:
            raw = _read_body(req)
            handler = self._handler_for(method, version)
            body = _parse_json(raw)
            context: Context | None = req.context.auth
            project_id = params.pop("project_id", None)
            if context and context.project_id and project_id and project_id != context.project_id:
                raise BadRequest(
                    f"Malformed request URL: URL's project_id '{project_id}' doesn't match "
                    f"Context's project_id '{context.project_id}'"
                )
            api_req = ApiRequest(
                context=context, version=version, body=body, params=params, query=_query(req),
                app=self.app, url=req.url, headers=headers, request_id=getattr(req.context, "request_id", None),
            )
            set_reply(resp, handler(api_req))
        except NovaError as error:
            set_fault(resp, error.code, error.message)
        except Exception as error:  # noqa: BLE001 - Nova answers any other error with a 500 fault
            unexpected_error(resp, error)


class PlainEndpoint:
    """A path outside microversion handling (version documents, the agent interface)."""

    def __init__(self, app: Any, methods: dict[str, Callable]):
        self.app = app
        self.methods = methods

    def dispatch(self, req: falcon.Request, resp: falcon.Response, params: dict[str, str]) -> None:
        handler = self.methods.get(req.method)
        if handler is None:
            set_bare_not_found(req, resp)
            return
        headers = headers_of(req)
        try:
            raw = _read_body(req)
            api_req = ApiRequest(
                context=getattr(req.context, "auth", None), version=microversion.MIN_VERSION,
                body=_parse_json(raw), params=params, query=_query(req), app=self.app, url=req.url,
                headers=headers,
            )
            set_reply(resp, handler(api_req))
        except NovaError as error:
            set_fault(resp, error.code, error.message)
        except Exception as error:  # noqa: BLE001
            unexpected_error(resp, error)


def _responder(method: str):
    def responder(self, req, resp, **params):
        self.dispatch(req, resp, params)

    responder.__name__ = f"on_{method.lower()}"
    return responder


# Falcon finds on_<method>; every method is defined so unknown ones reach dispatch's bare 404
# instead of Falcon's 405 (Nova never answers 405).
for _method in HTTP_METHODS:
    setattr(ComputeEndpoint, f"on_{_method.lower()}", _responder(_method))
    setattr(PlainEndpoint, f"on_{_method.lower()}", _responder(_method))
