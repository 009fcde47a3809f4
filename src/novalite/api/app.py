"""Builds the WSGI application: the Falcon app over the route table, auth, request ids, headers."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import falcon
from sqlalchemy import Engine

from novalite.api import auth, microversion, routes
from novalite.api.handlers import versions
from novalite.api.policy import Enforcer
from novalite.api.views.services import ListedServicesJson
from novalite.api.wsgi import ApiRequest, ComputeEndpoint, PlainEndpoint, set_bare_not_found, set_reply
from novalite.config import Settings
from novalite.db.engine import engine_for
from novalite.domain.host_work import HostWork
from novalite.domain.servers import Servers
from novalite.domain.services import Services
from novalite.exceptions import Unauthorized
from novalite.secret_files import read_secret

_PROJECT_ID = re.compile(r"^[0-9a-fA-F\-]+$")


@dataclass
class Application:
    """What handlers reach through ``req.app``."""

    settings: Settings
    engine: Engine
    services: Services
    servers: Servers
    host_work: HostWork
    enforcer: Enforcer
    agent_auth: auth.AgentAuth
    # This process's kept JSON of listed services (views.services), beside the rows Services keeps.
    listed_services_json: ListedServicesJson = field(default_factory=ListedServicesJson)


class ProjectIdConverter(falcon.routing.BaseConverter):
    """Nova's project_id route segment: hex digits and dashes only."""

    def convert(self, value: str):
        return value if _PROJECT_ID.match(value) else None


def _needs_auth(path: str) -> bool:
    return path.startswith("/v2.1/") and path != "/v2.1/" or path.startswith("/v2/") and path != "/v2/"


def _has_request_id(path: str) -> bool:
    return path == "/v2.1" or path == "/v2" or path.startswith(("/v2.1/", "/v2/"))


class PipelineMiddleware:
    def __init__(self, authenticator: Any):
        self.authenticator = authenticator

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.version = None
        req.context.auth = None
        # Made here, not with the response, so the domain can record it with instance actions.
        req.context.request_id = f"req-{uuid.uuid4()}" if _has_request_id(req.path) else None
        if not _needs_auth(req.path):
            return
        headers = {k.lower(): val for k, val in req.headers.items()}
        try:
            req.context.auth = self.authenticator.authenticate(headers)
        except Unauthorized:
            resp.status = 401
            resp.content_type = "application/json"
            resp.data = auth.UNAUTHORIZED_BODY
            resp.complete = True

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        request_id = getattr(req.context, "request_id", None)
        if request_id:
            resp.set_header("x-openstack-request-id", request_id)
            resp.set_header("x-compute-request-id", request_id)
        if req.context.version is not None:
            for name, value in microversion.response_headers(req.context.version):
                resp.append_header(name, value)


def _route_not_found(app: Application):
    def handle(req: falcon.Request, resp: falcon.Response, _error, _params) -> None:
        if req.path.startswith(("/v2.1/", "/v2/", "/agent/")):
            set_bare_not_found(req, resp)
            return
        fake = ApiRequest(context=None, version=microversion.MIN_VERSION, body=None, params={}, query={},
                          app=app, url=req.url)
        set_reply(resp, versions.multiple_choices(fake))

    return handle


def split_vary(wsgi_app):
    """Emit Vary as separate header lines, as Nova does (Falcon joins repeated values with commas)."""

    def wrapped(environ, start_response):
        def start(status, headers, exc_info=None):
            out = []
            for name, value in headers:
                if name.lower() == "vary":
                    out.extend(("Vary", part.strip()) for part in value.split(","))
                else:
                    out.append((name, value))
            return start_response(status, out, exc_info) if exc_info else start_response(status, out)

        return wsgi_app(environ, start)

    return wrapped


def _authenticator(settings: Settings):
    strategy = settings.api.auth_strategy
    if strategy == "token":
        return auth.AdminTokenAuth(read_secret(settings.api.admin_token_file))
    if strategy == "noauth2":
        return auth.NoAuth2()
    return auth.KeystoneHeaders()


def build_falcon_app(app: Application) -> falcon.App:
    api = falcon.App(middleware=[PipelineMiddleware(_authenticator(app.settings))])
    api.router_options.converters["projectid"] = ProjectIdConverter
    api.req_options.keep_blank_qs_values = True
    for prefix in routes.COMPUTE_PREFIXES:
        for path, methods in routes.COMPUTE_ROUTES.items():
            api.add_route(prefix + path, ComputeEndpoint(app, methods))
    for path, methods in routes.VERSIONED_DOCUMENTS.items():
        api.add_route(path, ComputeEndpoint(app, methods))
    for table in (routes.PLAIN_DOCUMENTS, routes.AGENT_ROUTES):
        for path, methods in table.items():
            api.add_route(path, PlainEndpoint(app, methods))
    api.add_error_handler(falcon.HTTPRouteNotFound, _route_not_found(app))
    return api


def make_application(settings: Settings, engine: Engine, enforcer: Enforcer | None,
                     agent_auth: auth.AgentAuth | None) -> Application:
    """The domain objects over ``engine``, for the handlers."""
    return Application(settings=settings, engine=engine, services=Services(engine, settings),
                       servers=Servers(engine, settings), host_work=HostWork(engine, settings),
                       enforcer=enforcer, agent_auth=agent_auth)


def create_application(settings: Settings, base_dir: str | None = None) -> Application:
    """The domain objects, policy enforcer and agent credential of one API process, over its own engine."""
    engine = engine_for(settings.database)
    agent_token = read_secret(settings.api.agent_token_file) if settings.api.agent_token_file else None
    return make_application(settings, engine, Enforcer(settings.oslo_policy, base_dir=base_dir),
                            auth.AgentAuth(agent_token))


def create_app(settings: Settings, base_dir: str | None = None):
    """The WSGI application for ``settings`` (keystonemiddleware around it for auth_strategy=keystone)."""
    return wsgi_app_of(create_application(settings, base_dir))


def wsgi_app_of(app: Application):
    settings = app.settings
    wsgi_app: Any = build_falcon_app(app)
    if settings.api.auth_strategy == "keystone":
        from keystonemiddleware import auth_token

        conf = {"delay_auth_decision": "true", **settings.keystone_authtoken}
        wsgi_app = auth_token.AuthProtocol(wsgi_app, conf)
    return split_vary(wsgi_app)


def base_dir_of(config_file: str | None) -> str | None:
    return str(Path(config_file).parent) if config_file else None
