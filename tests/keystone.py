"""A real Keystone for live tests: keystone from PyPI (its own venv) on SQLite, on 127.0.0.1.

The recipe is spec/clients.md section 5. Set-up is one ``keystone-manage``-equivalent process that
runs db_sync, fernet_setup, credential_setup and bootstrap in turn (importing keystone once instead of
four times), then a werkzeug server over ``keystone.wsgi.api``'s application through a wrapper that
resets ``sys.argv`` (keystone's oslo.config would parse pytest's arguments otherwise).

The session-scoped ``keystone`` fixture also provisions what the tests need:
- ``admin``/``adminpw`` in project ``admin`` (bootstrap), role admin;
- ``demo``/``demopw`` in project ``demo``, role member (Nova's non-admin caller);
- ``nova``/``novapw`` in project ``service``, role service (keystonemiddleware validates tokens as it);
- a ``compute`` service with public/internal/admin endpoints at ``compute_port``, chosen up front so
  that a novalite API started later on that port (``start_keystone_stack``) is what the catalog names.

Import it into a test module with ``from tests.keystone import keystone  # noqa: F401``.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from keystoneauth1 import session as ks_session
from keystoneauth1.identity import v3

from tests import databases
from tests.stack import Stack, free_port, wait_until

REPO = Path(__file__).resolve().parent.parent
REGION = "RegionOne"
DOMAIN = "Default"

# Runs the four keystone-manage steps in one interpreter; CONF is cleared between them because
# keystone.cmd.cli.main() parses the command line into the global CONF each time.
_SETUP_SCRIPT = """\
import sys
from oslo_config import cfg
from keystone.cmd import cli

conf_file, user, group, password, public_url = sys.argv[1:6]
steps = [
    ["db_sync"],
    ["fernet_setup", "--keystone-user", user, "--keystone-group", group],
    ["credential_setup", "--keystone-user", user, "--keystone-group", group],
    ["bootstrap", "--bootstrap-password", password, "--bootstrap-region-id", "RegionOne",
     "--bootstrap-admin-url", public_url, "--bootstrap-internal-url", public_url,
     "--bootstrap-public-url", public_url],
]
for step in steps:
    cfg.CONF.clear()
    try:
        cli.main(argv=["keystone-manage", "--config-file", conf_file, *step])
    except SystemExit as exc:
        if exc.code:
            raise
"""

# The WSGI wrapper of clients.md section 5.4: reset argv before keystone's oslo.config sees it.
# One request at a time: concurrent writers on SQLite fail with "database is locked" (Tempest's
# parallel workers delete their users at the same moment), and with the cache a request takes ~20 ms.
_SERVE_SCRIPT = """\
import sys
port = int(sys.argv[1])
sys.argv = sys.argv[:1]
from keystone.server import wsgi
from werkzeug.serving import run_simple
run_simple("127.0.0.1", port, wsgi.initialize_public_application(), threaded=False)
"""

_CONFIG = """\
[database]
connection = sqlite:///{root}/keystone.db
[token]
provider = fernet
expiration = 86400
[fernet_tokens]
key_repository = {root}/fernet-keys
[fernet_receipts]
key_repository = {root}/fernet-keys
[credential]
key_repository = {root}/credential-keys
[identity]
# bcrypt's minimum cost: Tempest authenticates dozens of freshly created users per run.
password_hash_rounds = 4
[cache]
# Without a cache every token validation costs ~0.4 s of assignment and catalog look-ups.
enabled = true
backend = dogpile.cache.memory
"""


def keystone_venv() -> Path:
    return Path(os.environ.get("TEST_KEYSTONE_VENV") or REPO / ".venv-keystone")


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    project_name: str


ADMIN = Credentials("admin", "adminpw", "admin")  # what bootstrap creates


@dataclass
class Keystone:
    root: Path
    port: int
    compute_port: int
    proc: subprocess.Popen
    admin: Credentials = ADMIN
    member: Credentials = Credentials("demo", "demopw", "demo")
    service: Credentials = Credentials("nova", "novapw", "service")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/v3"

    @property
    def compute_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.compute_port}/v2.1"

    def session(self, creds: Credentials) -> ks_session.Session:
        auth = v3.Password(auth_url=self.auth_url, username=creds.username, password=creds.password,
                           project_name=creds.project_name, user_domain_name=DOMAIN,
                           project_domain_name=DOMAIN)
        return ks_session.Session(auth=auth)

    def token(self, creds: Credentials) -> str:
        """A project-scoped Fernet token, by password auth through keystoneauth."""
        return self.session(creds).get_token()

    def client_env(self, creds: Credentials) -> dict[str, str]:
        """The OS_* variables of password auth for the openstack/nova CLIs (other OS_* removed)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "NOVALITE_"))}
        env.update(OS_AUTH_URL=self.auth_url, OS_IDENTITY_API_VERSION="3", OS_AUTH_TYPE="password",
                   OS_USERNAME=creds.username, OS_PASSWORD=creds.password,
                   OS_PROJECT_NAME=creds.project_name, OS_USER_DOMAIN_NAME=DOMAIN,
                   OS_PROJECT_DOMAIN_NAME=DOMAIN, OS_REGION_NAME=REGION, OS_INTERFACE="public")
        return env

    def authtoken_config(self) -> dict[str, str]:
        """The [keystone_authtoken] section for novalite (keystonemiddleware's auth_token)."""
        return {
            "www_authenticate_uri": self.auth_url,
            "auth_url": self.auth_url,
            "auth_type": "password",
            "username": self.service.username,
            "password": self.service.password,
            "project_name": self.service.project_name,
            "user_domain_name": DOMAIN,
            "project_domain_name": DOMAIN,
            "region_name": REGION,
        }


def _run_setup(root: Path, port: int, env: dict[str, str]) -> None:
    script = root / "ks_setup.py"
    script.write_text(_SETUP_SCRIPT)
    user = pwd.getpwuid(os.getuid()).pw_name
    group = grp.getgrgid(os.getgid()).gr_name
    with (root / "setup.log").open("wb") as log:
        result = subprocess.run(
            [str(keystone_venv() / "bin" / "python"), str(script), str(root / "keystone.conf"), user, group,
             ADMIN.password, f"http://127.0.0.1:{port}/v3/"],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, timeout=120,
        )
    if result.returncode:
        tail = (root / "setup.log").read_text(errors="replace")[-3000:]
        raise AssertionError(f"keystone set-up failed ({result.returncode}):\n{tail}")


def _start_server(root: Path, port: int, env: dict[str, str]) -> subprocess.Popen:
    script = root / "ks_wsgi.py"
    script.write_text(_SERVE_SCRIPT)
    with (root / "keystone.log").open("ab") as log:
        proc = subprocess.Popen([str(keystone_venv() / "bin" / "python"), str(script), str(port)], stdout=log,
                                stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)

    def ready():
        if proc.poll() is not None:
            tail = (root / "keystone.log").read_text(errors="replace")[-3000:]
            raise AssertionError(f"keystone exited {proc.returncode}:\n{tail}")
        try:
            return requests.get(f"http://127.0.0.1:{port}/v3", timeout=1).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_until(ready, timeout=60, what="keystone")
    except BaseException:
        _stop(proc)
        raise
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _provision(ks: Keystone) -> None:
    """Projects, users, role assignments and the compute endpoints, through Keystone's v3 API."""
    sess = ks.session(ks.admin)
    api = ks.auth_url

    def create(kind: str, body: dict) -> str:
        return sess.post(f"{api}/{kind}s", json={kind: body}).json()[kind]["id"]

    roles = {r["name"]: r["id"] for r in sess.get(f"{api}/roles").json()["roles"]}
    for creds, role in ((ks.member, "member"), (ks.service, "service")):
        project_id = create("project", {"name": creds.project_name, "domain_id": "default"})
        user_id = create("user", {"name": creds.username, "password": creds.password, "domain_id": "default",
                                  "default_project_id": project_id})
        sess.put(f"{api}/projects/{project_id}/users/{user_id}/roles/{roles[role]}")
    service_id = create("service", {"name": "nova", "type": "compute"})
    for interface in ("public", "internal", "admin"):
        create("endpoint", {"service_id": service_id, "interface": interface, "region_id": REGION,
                            "url": ks.compute_endpoint})


@pytest.fixture(scope="session")
def keystone(tmp_path_factory) -> Iterator[Keystone]:
    """A provisioned, running Keystone for the whole session (6-10 s to start, depending on load)."""
    if not (keystone_venv() / "bin" / "keystone-manage").exists():
        pytest.skip(f"no keystone venv at {keystone_venv()} (`make test` creates it; TEST_KEYSTONE_VENV)")
    root = tmp_path_factory.mktemp("keystone")
    port = free_port()
    (root / "keystone.conf").write_text(_CONFIG.format(root=root))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "NOVALITE_"))}
    env["OS_KEYSTONE_CONFIG_FILES"] = str(root / "keystone.conf")
    _run_setup(root, port, env)
    proc = _start_server(root, port, env)
    ks = Keystone(root=root, port=port, compute_port=free_port(), proc=proc)
    try:
        _provision(ks)
        yield ks
    finally:
        _stop(proc)


def start_keystone_stack(ks: Keystone, root: Path, database_url: str, **kwargs) -> Stack:
    """A started novalite API with auth_strategy=keystone on the port the catalog names."""
    stack = Stack(root=root, database_url=database_url, auth_strategy="keystone",
                  extra_config={"keystone_authtoken": ks.authtoken_config()}, port=ks.compute_port, **kwargs)
    try:
        stack.start_api()
    except BaseException:
        stack.close()
        raise
    return stack


def wait_for_computes(ks: Keystone, stack: Stack, *hosts: str, timeout: float = 20.0) -> None:
    """Poll the service list as Keystone's admin until every host's nova-compute is registered."""
    headers = {"X-Auth-Token": ks.token(ks.admin), "X-OpenStack-Nova-API-Version": "2.53"}

    def registered():
        resp = requests.get(f"{stack.endpoint}/os-services", headers=headers, timeout=5)
        resp.raise_for_status()
        return set(hosts) <= {s["host"] for s in resp.json()["services"] if s["binary"] == "nova-compute"}

    wait_until(registered, timeout=timeout, what=f"compute services {hosts}")


@contextlib.contextmanager
def keystone_stack_with_compute(ks: Keystone, root: Path, host: str = "compute1") -> Iterator[Stack]:
    """A keystone-authenticated novalite API with one registered, heartbeating compute agent."""
    with databases.for_module(root) as database_url:
        stack = start_keystone_stack(ks, root, database_url)
        try:
            stack.start_compute(host)
            wait_for_computes(ks, stack, host)
            yield stack
        finally:
            stack.close()
