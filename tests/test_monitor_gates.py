"""The monitor's named safety gates and per-server policy (novalite.monitor.gates), rule by rule.

Each rule returns None when the monitor may act and otherwise the reason, which starts with the rule's name
(the journal cites it). The anchors are RHOSO InstanceHA's gate chain (ha-anchors.md 2.2: API reachable,
THRESHOLD 50 %, MAX_HOSTS_PER_CYCLE 10, evacuable tags) and Nova's disabled reasons (spec 3.4, 4.7).
"""

from __future__ import annotations

import pytest

from novalite.config import MonitorOpts
from novalite.monitor import gates
from novalite.monitor.recovery import EVACUATED, RECOVERING, marker, parse_marker

pytestmark = pytest.mark.no_database

# -- quorum ----------------------------------------------------------------------------------------------


def test_quorum_holds_when_the_compute_api_cannot_be_reached():
    # An isolated monitor does nothing, however many hosts it still hears (issue 4, gate 4).
    reason = gates.quorum(False, 1.0, 0.5)
    assert reason is not None and reason.startswith("quorum:")
    assert "cannot be reached" in reason


def test_quorum_holds_below_the_minimum_share_of_alive_hosts():
    reason = gates.quorum(True, 0.25, 0.5)
    assert reason is not None and reason.startswith("quorum:")
    assert "25%" in reason and "50%" in reason


@pytest.mark.parametrize("alive_share", [0.5, 0.75, 1.0])
def test_quorum_passes_at_and_above_the_minimum_share(alive_share):
    assert gates.quorum(True, alive_share, 0.5) is None


def test_quorum_defaults_are_the_configured_ones():
    # [monitor] min_alive_share: at least half of the known hosts alive.
    opts = MonitorOpts()
    assert gates.quorum(True, 0.5, opts.min_alive_share) is None
    assert gates.quorum(True, 0.49, opts.min_alive_share) is not None


# -- mass failure ----------------------------------------------------------------------------------------


def test_mass_failure_holds_when_more_than_the_share_fails_at_once():
    # RHOSO's THRESHOLD (50 % of hosts down): a network or power event, not host failures.
    reason = gates.mass_failure(3, 4, 0.5)
    assert reason is not None and reason.startswith("mass-failure:")
    assert "3 of 4" in reason


@pytest.mark.parametrize(("failed", "known"), [(1, 4), (2, 4), (0, 4), (5, 10)])
def test_mass_failure_passes_up_to_the_share(failed, known):
    assert gates.mass_failure(failed, known, 0.5) is None


def test_mass_failure_with_no_known_hosts_does_not_hold():
    assert gates.mass_failure(0, 0, 0.5) is None


def test_mass_failure_of_the_only_host_holds():
    assert gates.mass_failure(1, 1, 0.5) is not None


# -- per-cycle cap ---------------------------------------------------------------------------------------


def test_per_cycle_cap_lets_hosts_through_up_to_the_cap():
    # RHOSO's MAX_HOSTS_PER_CYCLE = 10, novalite's [monitor] max_hosts_per_cycle default.
    cap = MonitorOpts().max_hosts_per_cycle
    assert cap == 10
    assert all(gates.per_cycle_cap(n, cap) is None for n in range(1, cap + 1))


def test_per_cycle_cap_holds_the_host_over_the_cap():
    reason = gates.per_cycle_cap(11, 10)
    assert reason is not None and reason.startswith("per-cycle-cap:")
    assert "11" in reason and "10" in reason


def test_per_cycle_cap_zero_means_no_cap():
    assert gates.per_cycle_cap(1000, 0) is None


# -- operator-disabled -----------------------------------------------------------------------------------


def _service(status: str, reason: str | None) -> dict:
    return {"host": "compute1", "binary": "nova-compute", "status": status, "disabled_reason": reason}


@pytest.mark.parametrize("reason", ["maintenance: disk swap", None, "novalite monitor"])
def test_operator_disabled_holds_a_host_disabled_by_someone_else(reason):
    held = gates.operator_disabled(_service("disabled", reason))
    assert held is not None and held.startswith("operator-disabled:")
    assert "compute1" in held


def test_operator_disabled_passes_an_enabled_host():
    assert gates.operator_disabled(_service("enabled", None)) is None


def test_operator_disabled_passes_the_monitors_own_markers():
    # The disabled_reason the monitor writes is its own state (ha-anchors 2.2: RHOSO's marker), not an operator's.
    for state in (RECOVERING, EVACUATED):
        assert gates.operator_disabled(_service("disabled", marker(state, "abc123", "since now"))) is None


def test_operator_disabled_passes_the_libvirt_drivers_auto_disable():
    # Spec 4.7: the libvirt driver disables its own compute with reasons prefixed "AUTO: ".
    assert gates.operator_disabled(_service("disabled", "AUTO: Connection to libvirt lost: 1")) is None


# -- opt-in ----------------------------------------------------------------------------------------------


def _server(metadata: dict | None = None, extra_specs: dict | None = None) -> dict:
    # Nova's server body from 2.47: the flavor embedded, with its extra specs for admins.
    return {"id": "s1", "metadata": metadata or {},
            "flavor": {"ram": 512, "disk": 1, "vcpus": 1, "extra_specs": extra_specs or {}}}


def test_opt_in_not_configured_evacuates_every_server():
    assert gates.opt_in(_server(), "", "") is None


@pytest.mark.parametrize("value", ["true", "True", "1", "yes", "on"])
def test_opt_in_by_metadata_true(value):
    assert gates.opt_in(_server({"evacuable": value}), "evacuable", "") is None


@pytest.mark.parametrize("metadata", [{}, {"evacuable": "false"}, {"evacuable": "nonsense"}, {"other": "true"}])
def test_opt_in_by_metadata_holds_servers_without_it(metadata):
    reason = gates.opt_in(_server(metadata), "evacuable", "")
    assert reason is not None and reason.startswith("opt-in:")
    assert "metadata evacuable=true" in reason


def test_opt_in_by_flavor_extra_spec_from_the_embedded_flavor():
    assert gates.opt_in(_server(extra_specs={"novalite:evacuable": "true"}), "", "novalite:evacuable") is None
    assert gates.opt_in(_server(), "", "novalite:evacuable") is not None


def test_opt_in_by_flavor_extra_spec_given_apart():
    # Below 2.47 the server names its flavor only: the extra specs come from GET /flavors/{id}/os-extra_specs.
    server = {"id": "s1", "metadata": {}, "flavor": {"id": "1"}}
    assert gates.opt_in(server, "", "novalite:evacuable", {"novalite:evacuable": "true"}) is None
    assert gates.opt_in(server, "", "novalite:evacuable", {}) is not None


def test_opt_in_either_way_suffices_when_both_are_set():
    key, spec = "evacuable", "novalite:evacuable"
    assert gates.opt_in(_server({"evacuable": "true"}), key, spec) is None
    assert gates.opt_in(_server(extra_specs={spec: "true"}), key, spec) is None
    reason = gates.opt_in(_server(), key, spec)
    assert reason is not None and "metadata evacuable=true or flavor extra spec novalite:evacuable=true" in reason


# -- the markers the gates recognise ---------------------------------------------------------------------


def test_markers_round_trip_and_fit_nova_disabled_reason():
    # Spec 3.4: disabled_reason is 1-255 characters.
    text = marker(RECOVERING, "0123456789ab", "since 2026-01-01T00:00:00.000Z")
    assert text == "novalite-monitor: recovering 0123456789ab since 2026-01-01T00:00:00.000Z"
    found = parse_marker(text)
    assert found is not None and (found.state, found.recovery_id) == (RECOVERING, "0123456789ab")
    assert len(marker(EVACUATED, "x", "y" * 400)) == 255
    assert parse_marker("maintenance") is None
    assert parse_marker(None) is None
    assert parse_marker("novalite-monitor: unknown abc") is None


def test_every_rule_is_named():
    assert gates.RULES == ("quorum", "mass-failure", "per-cycle-cap", "operator-disabled", "opt-in")
