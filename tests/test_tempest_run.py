"""The real Tempest os-services tests (``tempest run``) against novalite behind a real Keystone.

spec/clients.md section 6.5: one run per ``[compute] min_microversion`` (2.1, 2.11, 2.53) with
``max_microversion`` at novalite's maximum; section 6.1 lists the 14 tests and why 2.53 skips one class.
"""

# The imported ``keystone`` fixture is requested by parameter name, which ruff reads as a redefinition.
# ruff: noqa: F811

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from novalite.api.microversion import MAX_VERSION
from tests.keystone import (
    REGION,
    Keystone,
    keystone,  # noqa: F401
    keystone_stack_with_compute,
)

pytestmark = [pytest.mark.keystone, pytest.mark.live]

TEMPEST = Path(sys.executable).parent / "tempest"
REGEX = r"^tempest\.api\.compute\.admin\.test_services"
HOST = "compute1"


def _tempest(args: list[str], cwd: Path, timeout: float, home: Path) -> subprocess.CompletedProcess:
    """``tempest ARGS``; HOME is redirected because tempest creates ~/.tempest (and registers workspaces)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "NOVALITE_", "TEMPEST_"))}
    env["HOME"] = str(home)
    return subprocess.run([str(TEMPEST), *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def stack(keystone: Keystone, tmp_path_factory):
    """novalite on the catalog's port with one real compute agent (test_services needs a nova-compute)."""
    with keystone_stack_with_compute(keystone, tmp_path_factory.mktemp("tempest-stack"), HOST) as stack:
        yield stack


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tempest")
    path = root / "workspace"
    proc = _tempest(["init", str(path)], cwd=root, timeout=60, home=root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return path


def write_tempest_conf(workspace: Path, ks: Keystone, min_microversion: str) -> Path:
    """etc/tempest.conf of spec/clients.md section 6.5."""
    conf = configparser.ConfigParser(interpolation=None)
    conf.read_dict({
        "DEFAULT": {"log_dir": str(workspace / "logs"), "log_file": f"tempest-{min_microversion}.log"},
        "oslo_concurrency": {"lock_path": str(workspace / "tempest_lock")},
        "auth": {"use_dynamic_credentials": "true", "admin_username": ks.admin.username,
                 "admin_password": ks.admin.password, "admin_project_name": ks.admin.project_name,
                 "admin_domain_name": "Default"},
        "identity": {"uri_v3": ks.auth_url, "auth_version": "v3", "region": REGION},
        "compute": {"region": REGION, "catalog_type": "compute", "endpoint_type": "publicURL",
                    "min_microversion": min_microversion,
                    # Tempest never reads the version document: it must be told where novalite stops.
                    "max_microversion": str(MAX_VERSION)},
        # glance must be "available" or every admin compute test fails in setUpClass (section 6.5).
        "service_available": {"nova": "true", "glance": "true", "neutron": "false", "cinder": "false",
                              "swift": "false"},
    })
    path = workspace / "etc" / "tempest.conf"
    with path.open("w") as out:
        conf.write(out)
    return path


_TOTAL = re.compile(r"^ - (Passed|Skipped|Failed|Expected Fail|Unexpected Success): (\d+)$", re.MULTILINE)


def totals(output: str) -> dict[str, int]:
    """stestr's summary lines (`` - Passed: 14``) as counts."""
    return {name.lower(): int(count) for name, count in _TOTAL.findall(output)}


@pytest.mark.parametrize(("min_microversion", "passed", "skipped"), [
    ("2.1", 14, 0),
    ("2.11", 14, 0),
    # ServicesAdminNegativeTestJSON stops at 2.52 (section 6.1); its V253 subclass runs instead.
    ("2.53", 10, 1),
])
def test_tempest_services_tests_pass(stack, keystone, workspace, min_microversion, passed, skipped):
    conf = write_tempest_conf(workspace, keystone, min_microversion)
    proc = _tempest(["run", "--config-file", str(conf), "--regex", REGEX], cwd=workspace, timeout=180,
                    home=workspace.parent)
    output = proc.stdout + proc.stderr
    counts = totals(proc.stdout)
    assert proc.returncode == 0, output[-8000:]
    assert counts.get("failed") == 0 and counts.get("unexpected success") == 0, output[-8000:]
    assert (counts.get("passed"), counts.get("skipped")) == (passed, skipped), output[-8000:]
