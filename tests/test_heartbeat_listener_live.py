"""The agents' heartbeat listener (api/heartbeat_listener.py) of a live ``novalite api``, on the run's backend.

It must answer ``PUT /agent/v1/services/{uuid}/heartbeat`` exactly as the API's own route does (spec 4.3: 204
once report_count + 1 and last_seen_up are committed, the 404 itemNotFound fault for a deleted service, which is
not recreated; 401 without the agent token; the router's bare 404 for anything else), over raw keep-alive HTTP/1.1
connections as an agent's session keeps them: requests one after the other and pipelined, answered in order;
HTTP/1.0 and ``Connection: close`` close after the answer; a malformed request gets a 400 and the connection is
closed; an idle connection is closed after the idle timeout.
"""

from __future__ import annotations

import json
import os
import socket
import time

import pytest
import requests
import sqlalchemy as sa

from novalite.agent.compute import AgentApi, AgentConfig
from novalite.api.auth import AgentAuth
from novalite.api.heartbeat_listener import HeartbeatListener, listening_socket
from novalite.db import engine as db_engine
from novalite.db.api import services as services_table
from novalite.domain.heartbeats import AsyncHeartbeats
from tests.clients import run_cli
from tests.raw_http import Connection
from tests.stack import Stack, free_port, module_stack

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with module_stack(tmp_path_factory.mktemp("heartbeat-listener")) as live:
        yield live


def register(stack: Stack, host: str) -> str:
    resp = requests.post(stack.url + "/agent/v1/services", headers={"X-Agent-Token": stack.agent_token},
                         json={"host": host, "binary": "nova-compute", "version": 73}, timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()["service"]["id"]


def delete(stack: Stack, service_uuid: str) -> None:
    resp = requests.delete(f"{stack.endpoint}/os-services/{service_uuid}", headers=stack.admin_headers("2.53"),
                           timeout=10)
    assert resp.status_code == 204, resp.text


def heartbeat_columns(stack: Stack, service_uuid: str) -> tuple[int, object] | None:
    """(report_count, last_seen_up) of the live record, None if there is none."""
    engine = db_engine.make_engine(stack.database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(sa.select(services_table.c.report_count, services_table.c.last_seen_up).where(
                services_table.c.uuid == service_uuid, services_table.c.deleted == 0)).first()
            return None if row is None else (row.report_count, row.last_seen_up)
    finally:
        engine.dispose()


def put(service_uuid: str, token: str, *, extra: str = "", version: str = "1.1") -> bytes:
    return (f"PUT /agent/v1/services/{service_uuid}/heartbeat HTTP/{version}\r\nHost: novalite\r\n"
            f"X-Agent-Token: {token}\r\nContent-Length: 0\r\n{extra}\r\n").encode()


@pytest.fixture
def connect(stack):
    opened: list[Connection] = []

    def make(port: int | None = None) -> Connection:
        opened.append(Connection(port or stack.heartbeat_port))
        return opened[-1]

    yield make
    for conn in opened:
        conn.close()


def test_heartbeats_on_one_keep_alive_connection_are_each_committed_before_their_204(stack, connect):
    service_uuid = register(stack, "keepalive-1")
    conn = connect()
    for n in range(1, 4):
        before = time.time()
        conn.send(put(service_uuid, stack.agent_token))
        status, headers, body = conn.response()
        assert (status, body) == (204, b"")
        assert "content-length" not in headers and "date" in headers
        # Spec 4.3: acknowledged means committed: report_count + 1 and last_seen_up this heartbeat's time.
        count, last_seen_up = heartbeat_columns(stack, service_uuid)
        assert count == n
        assert last_seen_up.timestamp() >= int(before) - 1
    [service] = [s for s in stack.services() if s["id"] == service_uuid]
    assert service["state"] == "up"


def test_pipelined_requests_are_answered_in_their_order(stack, connect):
    live, gone = register(stack, "pipelined-live"), register(stack, "pipelined-gone")
    delete(stack, gone)
    conn = connect()
    conn.send(put(live, stack.agent_token)
              + put(gone, stack.agent_token)
              + f"GET /agent/v1/services/{live}/heartbeat HTTP/1.1\r\nAccept: application/json\r\n\r\n".encode()
              + put(live, "not-the-agent-token")
              + b"PUT /agent/v1/services HTTP/1.1\r\nContent-Length: 0\r\n\r\n"
              + put(live, stack.agent_token))
    answers = [conn.response() for _ in range(6)]
    assert [status for status, _h, _b in answers] == [204, 404, 404, 401, 404, 204]
    # The deleted service: the route's itemNotFound fault, and the record is not recreated (spec 4.3).
    assert json.loads(answers[1][2]) == {"itemNotFound": {"code": 404, "message": f"Service {gone} could not be "
                                                                                  "found."}}
    assert heartbeat_columns(stack, gone) is None
    # Another method, another path: the router's bare 404, as the API answers them (spec 2).
    assert json.loads(answers[2][2])["title"] == "Not Found"
    assert answers[4][1]["content-type"].startswith("text/html")
    assert json.loads(answers[3][2]) == {"unauthorized": {
        "code": 401, "message": "The request you have made requires authentication."}}
    assert heartbeat_columns(stack, live)[0] == 2  # the refused one wrote nothing


def test_the_listener_answers_as_the_api_route_does(stack, connect):
    # The same requests to the API's own /agent/v1 route and to the listener get the same status and body.
    service_uuid, gone = register(stack, "same-answers"), register(stack, "same-answers-gone")
    delete(stack, gone)
    cases = [(service_uuid, stack.agent_token), (gone, stack.agent_token), (service_uuid, "wrong"), (service_uuid, "")]
    for target, token in cases:
        headers = {"X-Agent-Token": token} if token else {}
        route = requests.put(f"{stack.url}/agent/v1/services/{target}/heartbeat", headers=headers, timeout=10)
        listener = requests.put(f"{stack.heartbeat_url}/agent/v1/services/{target}/heartbeat", headers=headers,
                                timeout=10)
        assert (listener.status_code, listener.content) == (route.status_code, route.content), (target, token)
    assert heartbeat_columns(stack, service_uuid)[0] == 2


@pytest.mark.parametrize("how", ["connection-close", "http/1.0"])
def test_a_request_that_asks_for_it_gets_its_answer_then_the_connection_closes(stack, connect, how):
    service_uuid = register(stack, f"closing-{how.replace('/', '')}")
    conn = connect()
    if how == "connection-close":
        conn.send(put(service_uuid, stack.agent_token, extra="Connection: close\r\n"))
    else:
        conn.send(put(service_uuid, stack.agent_token, version="1.0"))
    status, headers, _body = conn.response()
    assert status == 204 and headers["connection"] == "close"
    assert conn.closed_by_server()
    assert heartbeat_columns(stack, service_uuid)[0] == 1


def test_a_heartbeat_pipelined_after_one_that_closes_the_connection_is_not_written(stack, connect):
    service_uuid = register(stack, "closing-pipelined")
    conn = connect()
    token = stack.agent_token
    conn.send(put(service_uuid, token, extra="Connection: close\r\n") + put(service_uuid, token))
    assert conn.response()[0] == 204
    assert conn.closed_by_server()
    assert heartbeat_columns(stack, service_uuid)[0] == 1


def test_a_malformed_request_gets_a_400_and_the_connection_closes(stack, connect):
    conn = connect()
    conn.send(b"PUT /agent/v1/services/x/heartbeat HTTP/1.1\r\nContent-Length: nonsense\r\n\r\n")
    status, headers, body = conn.response()
    assert status == 400 and headers["connection"] == "close"
    assert json.loads(body)["badRequest"]["code"] == 400
    assert conn.closed_by_server()


def test_an_agent_sends_its_heartbeats_to_heartbeat_url(stack):
    # [agent] heartbeat_url: the heartbeats go there, the other calls to api_url (here a port nobody serves).
    service_uuid = register(stack, "agent-heartbeat-url")
    api = AgentApi(AgentConfig(host="agent-heartbeat-url", api_url=f"http://127.0.0.1:{free_port()}",
                               agent_token=stack.agent_token, report_interval=10,
                               heartbeat_url=stack.heartbeat_url))
    assert api.heartbeat(service_uuid) is True
    assert heartbeat_columns(stack, service_uuid)[0] == 1
    delete(stack, service_uuid)
    assert api.heartbeat(service_uuid) is False  # the agent logs that its record is gone
    with pytest.raises(requests.ConnectionError):
        api.work(service_uuid)


def test_an_idle_connection_is_closed_after_the_idle_timeout(stack):
    # A listener of its own over the stack's database, with a short idle timeout.
    engine = db_engine.make_engine(stack.database_url)
    sock = listening_socket(f"127.0.0.1:{free_port()}")
    listener = HeartbeatListener(sock, AsyncHeartbeats(engine), AgentAuth(stack.agent_token), idle_timeout=0.4)
    listener.start_in_thread()
    service_uuid = register(stack, "idle")
    conn = Connection(sock.getsockname()[1])
    try:
        conn.send(put(service_uuid, stack.agent_token))
        assert conn.response()[0] == 204
        started = time.monotonic()
        assert conn.closed_by_server()
        assert 0.3 < time.monotonic() - started < 5
    finally:
        conn.close()
        engine.dispose()


def test_novalite_api_refuses_a_heartbeat_address_it_cannot_listen_on(stack):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        for address, why in ((f"127.0.0.1:{port}", "Address already in use"), ("nowhere", "is not host:port")):
            result = run_cli(["novalite", "api", "--config-file", str(stack.config_file), "--bind",
                              f"127.0.0.1:{free_port()}", "--heartbeat-bind", address], dict(os.environ), expect_rc=1)
            assert f"cannot listen for heartbeats on {address}" in result.stderr and why in result.stderr

