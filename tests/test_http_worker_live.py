"""novalite's gunicorn worker (api/http_worker.py) under a live ``novalite api``, on the run's backend.

The whole suite speaks to the API through it (real clients, Tempest, keystonemiddleware); these tests pin the
HTTP it must get right on its own: keep-alive and pipelining answered in order, HTTP/1.0 and ``Connection:
close``, ``Expect: 100-continue`` (curl sends it for larger bodies), HEAD, headers with an underscore dropped
(as gunicorn drops them), the refusals of malformed and oversized requests, idle connections closed after
gunicorn's keepalive, the access log, and gunicorn's threaded worker still serving ``--threads`` above 1.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest
import requests

from tests import databases
from tests.clients import run_cli
from tests.raw_http import Connection
from tests.stack import Stack, module_stack

pytestmark = pytest.mark.live

KEEPALIVE = 5  # novalite api's gunicorn keepalive (cli/api_server.py)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    with module_stack(tmp_path_factory.mktemp("http-worker"), access_log=True) as live:
        yield live


@pytest.fixture
def connect(stack):
    opened: list[Connection] = []

    def make() -> Connection:
        opened.append(Connection(stack.port))
        return opened[-1]

    yield make
    for conn in opened:
        conn.close()


def request(method: str, path: str, *headers: str, body: bytes = b"", version: str = "1.1") -> bytes:
    lines = [f"{method} {path} HTTP/{version}", "Host: 127.0.0.1", *headers]
    if body or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def test_pipelined_requests_on_one_connection_are_answered_in_order(stack, connect):
    conn = connect()
    token = f"X-Auth-Token: {stack.admin_token}"
    conn.send(request("GET", "/") + request("GET", "/v2.1/os-services", token) + request("GET", "/v2.1/nowhere", token)
              + request("GET", "/v2.1/"))
    answers = [conn.response() for _ in range(4)]
    assert [status for status, _h, _b in answers] == [200, 200, 404, 200]
    assert "versions" in json.loads(answers[0][2])
    assert json.loads(answers[1][2]) == {"services": []}
    assert json.loads(answers[3][2])["version"]["id"] == "v2.1"
    assert all("date" in headers and "x-openstack-request-id" in headers for _s, headers, _b in answers[1:])


@pytest.mark.parametrize("how", ["connection-close", "http/1.0"])
def test_a_request_that_asks_for_it_is_answered_then_its_connection_closed(stack, connect, how):
    conn = connect()
    conn.send(request("GET", "/", "Connection: close") if how == "connection-close"
              else request("GET", "/", version="1.0"))
    status, headers, body = conn.response()
    assert status == 200 and headers["connection"] == "close" and json.loads(body)["versions"]
    assert conn.closed_by_server()


def register_request(stack: Stack, host: str, *headers: str, chunked: bool = False) -> bytes:
    body = json.dumps({"host": host, "binary": "nova-compute", "version": 73}).encode()
    head = [f"X-Agent-Token: {stack.agent_token}", "Content-Type: application/json", *headers]
    if not chunked:
        return request("POST", "/agent/v1/services", *head, body=body)
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:10], body[10:])) + b"0\r\n\r\n"
    return ("\r\n".join(["POST /agent/v1/services HTTP/1.1", "Host: x", *head, "Transfer-Encoding: chunked"])
            + "\r\n\r\n").encode() + chunks


def registered_hosts(stack: Stack) -> set[str]:
    return {s["host"] for s in stack.services()}


def test_a_request_pipelined_after_one_that_closes_the_connection_is_not_served(stack, connect):
    conn = connect()
    conn.send(request("GET", "/", "Connection: close") + register_request(stack, "after-close"))
    status, headers, _body = conn.response()
    assert status == 200 and headers["connection"] == "close"
    assert conn.closed_by_server()
    assert "after-close" not in registered_hosts(stack)


def test_a_chunked_request_body_reaches_the_app_whole(stack, connect):
    conn = connect()
    conn.send(register_request(stack, "chunked", chunked=True))
    status, _headers, body = conn.response()
    assert status == 200 and json.loads(body)["service"]["host"] == "chunked"
    assert "chunked" in registered_hosts(stack)


def test_expect_100_continue_gets_its_interim_answer_before_the_body_is_sent(stack, connect):
    conn = connect()
    body = json.dumps({"host": "expecting", "binary": "nova-compute", "version": 73}).encode()
    conn.send(f"POST /agent/v1/services HTTP/1.1\r\nHost: x\r\nX-Agent-Token: {stack.agent_token}\r\n"
              f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n".encode())
    assert conn.response()[0] == 100
    conn.send(body)
    status, _headers, answer = conn.response()
    assert status == 200 and json.loads(answer)["service"]["host"] == "expecting"


def test_head_is_answered_with_the_headers_of_get_and_no_body(stack, connect):
    # Without a token both get the 401 body; the HEAD's answer has its Content-Length and no body (the GET
    # pipelined behind it is read right after the HEAD's headers).
    conn = connect()
    conn.send(request("HEAD", "/v2.1/os-services") + request("GET", "/v2.1/os-services"))
    status, headers, body = conn.response(head_only=True)
    got_status, got_headers, got_body = conn.response()
    assert (status, body, got_status) == (401, b"", 401) and got_body
    assert headers["content-length"] == got_headers["content-length"] == str(len(got_body))


def test_a_header_with_an_underscore_is_dropped_as_gunicorn_drops_it(stack, connect):
    # X-Auth_Token must not pass for X-Auth-Token: the API sees no token at all.
    conn = connect()
    conn.send(request("GET", "/v2.1/os-services", f"X-Auth_Token: {stack.admin_token}"))
    assert conn.response()[0] == 401


def test_malformed_and_oversized_requests_are_refused_and_their_connections_closed(stack, connect):
    malformed = connect()
    malformed.send(b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n")
    status, headers, _body = malformed.response()
    assert status == 400 and headers["connection"] == "close" and malformed.closed_by_server()
    oversized = connect()
    oversized.send(request("PUT", "/v2.1/os-services/force-down", f"X-Auth-Token: {stack.admin_token}",
                           body=b"x" * (1024 * 1024 + 1)))
    status, headers, _body = oversized.response()
    assert status == 413 and headers["connection"] == "close" and oversized.closed_by_server()
    # ...and the worker serves on.
    assert requests.get(f"{stack.endpoint}/os-services", headers=stack.admin_headers(), timeout=10).status_code == 200


def test_an_idle_connection_is_closed_after_the_keepalive(stack, connect):
    conn = connect()
    conn.send(request("GET", "/"))
    assert conn.response()[0] == 200
    started = time.monotonic()
    assert conn.closed_by_server()
    assert KEEPALIVE - 0.5 < time.monotonic() - started < KEEPALIVE + 5


def test_requests_are_in_the_access_log(stack, connect):
    conn = connect()
    conn.send(request("GET", "/v2.1/?logged=1", "User-Agent: access-log-test"))
    status, _headers, body = conn.response()
    assert status == 200

    def logged():
        return [line for line in stack.log("api.log").splitlines() if "GET /v2.1/?logged=1 HTTP/1.1" in line]

    deadline = time.monotonic() + 10
    while not logged() and time.monotonic() < deadline:
        time.sleep(0.1)
    [line] = logged()
    assert f'" 200 {len(body)} ' in line and "access-log-test" in line  # gunicorn's format: status, body size


def test_sigterm_stops_the_api_with_a_client_connected_and_no_worker_killed(tmp_path):
    # gunicorn's graceful stop: each worker stops accepting, closes its idle connections and exits by itself; the
    # master exits 0 without having to SIGKILL a worker that outlived its graceful_timeout (5 s).
    stopping = Stack(root=tmp_path / "stopping", database_url=databases.fresh_url(tmp_path))
    try:
        master = stopping.start_api(workers=2)
        conn = Connection(stopping.port)
        conn.send(request("GET", "/"))
        assert conn.response()[0] == 200
        master.send_signal(signal.SIGTERM)
        assert master.wait(timeout=30) == 0
        assert conn.closed_by_server()
        assert "SIGKILL" not in stopping.log("api.log")  # gunicorn's words for a worker it had to kill
        conn.close()
    finally:
        stopping.close()


def test_threads_above_one_are_served_by_gunicorns_threaded_worker(tmp_path):
    threaded = Stack(root=tmp_path / "threaded", database_url=databases.fresh_url(tmp_path))
    try:
        threaded.start_api(workers=1, threads=4)
        assert requests.get(threaded.url + "/v2.1/", timeout=10).status_code == 200
        assert "gthread" in threaded.log("api.log")
    finally:
        threaded.close()
    refused = run_cli(["novalite", "api", "--config-file", str(threaded.config_file), "--threads", "4", "--worker",
                       "novalite"], dict(os.environ), expect_rc=1)
    assert "--threads needs --worker gthread" in refused.stderr
