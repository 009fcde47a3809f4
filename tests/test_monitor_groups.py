"""The monitor's recovery policy per host group: [host_group:<name>] sections, how a host resolves to its policy,
the configuration errors, and how each first evacuation's target is chosen (novalite.monitor.groups, .targets).

The anchor is Masakari's failover segments (ha-anchors.md 1.2): per segment a recovery method and reserved
hosts (reserved_host / rh_priority: spares first, then the rest), and per-VM opt-in (HA_Enabled metadata); the
users' asks are in ha-anchors.md 6.2 (3: guaranteed capacity, 6: selectivity and ordering).
"""

from __future__ import annotations

import textwrap

import pytest

from novalite import config
from novalite.monitor.groups import MONITOR, AmbiguousHost, HostGroups
from novalite.monitor.targets import Move, Room, pick

pytestmark = pytest.mark.no_database


def load(tmp_path, text: str, environ: dict | None = None) -> config.Settings:
    path = tmp_path / "novalite.conf"
    path.write_text("[api]\nauth_strategy = noauth2\n" + textwrap.dedent(text))
    return config.load(path, environ=environ or {})


TWO_GROUPS = """
    [monitor]
    reserved_hosts = spare0
    evacuable_metadata_key = ha
    leave_disabled = false

    [host_group:gold]
    hosts = gold-*, special1
    reserved_hosts = gold-spare
    evacuable_metadata_key =
    priority_metadata_key = gold:priority
    leave_disabled = true
    targets = group
    fallback = none

    [host_group:lab]
    hosts = lab1, lab2
    recovery_method = notify
"""


# -- the sections ------------------------------------------------------------------------------------------------

def test_host_group_sections_are_parsed_and_unset_options_stay_unset(tmp_path):
    settings = load(tmp_path, TWO_GROUPS)
    gold, lab = settings.host_groups["gold"], settings.host_groups["lab"]
    assert gold.patterns() == ["gold-*", "special1"] and gold.spares() == ["gold-spare"]
    assert (gold.evacuable_metadata_key, gold.leave_disabled) == ("", True)
    assert (gold.targets, gold.fallback) == ("group", "none")
    assert gold.evacuable_extra_spec is None  # left out: [monitor]'s applies
    assert (lab.recovery_method, lab.reserved_hosts, lab.leave_disabled, lab.targets) == ("notify", None, None, "any")


def test_a_host_group_option_can_come_from_the_environment(tmp_path):
    # As every option: NOVALITE_<GROUP>__<OPTION>, the group being the section's name.
    settings = load(tmp_path, TWO_GROUPS, environ={"NOVALITE_HOST_GROUP:LAB__LEAVE_DISABLED": "yes"})
    assert settings.host_groups["lab"].leave_disabled is True


def test_an_unknown_option_in_a_host_group_is_an_error_that_lists_the_known_ones(tmp_path):
    with pytest.raises(ValueError, match=r"unknown option \[host_group:gold\] spares \(a host group knows hosts, "):
        load(tmp_path, "[host_group:gold]\nhosts = gold-*\nspares = gold-9\n")


@pytest.mark.parametrize(("option", "value", "message"), [
    ("recovery_method", "auto", r"\[host_group:g\] recovery_method must be one of evacuate, notify, not 'auto'"),
    ("targets", "spares", r"\[host_group:g\] targets must be one of any, group, not 'spares'"),
    ("fallback", "auto", r"\[host_group:g\] fallback must be one of scheduler, none, not 'auto'"),
    ("leave_disabled", "maybe", "not a boolean: 'maybe'"),
])
def test_host_group_values_are_checked_at_load(tmp_path, option, value, message):
    with pytest.raises(ValueError, match=message):
        load(tmp_path, f"[host_group:g]\nhosts = g-*\n{option} = {value}\n")


def test_a_host_group_needs_hosts(tmp_path):
    with pytest.raises(ValueError, match=r"\[host_group:g\] needs hosts"):
        load(tmp_path, "[host_group:g]\nrecovery_method = notify\n")


def test_a_groups_spares_must_be_its_own_hosts(tmp_path):
    with pytest.raises(ValueError, match=r"\[host_group:g\] reserved_hosts: other-1 not among the group's hosts"):
        load(tmp_path, "[host_group:g]\nhosts = g-*\nreserved_hosts = g-9, other-1\n")


@pytest.mark.parametrize(("a_hosts", "b_hosts", "message"), [
    ("n1, n2", "n3, n2", r"host n2 is in two host groups: \[host_group:a\] \(hosts 'n2'\) and \[host_group:b\]"),
    ("n1, n2", "n*", r"host n1 is in two host groups: \[host_group:a\] \(hosts 'n1'\) and "
                     r"\[host_group:b\] \(hosts 'n\*'\)"),
    ("rack[12]-*", "rack3-1, rack1-7", r"host rack1-7 is in two host groups: \[host_group:b\] \(hosts 'rack1-7'\) "
                                       r"and \[host_group:a\] \(hosts 'rack\[12\]-\*'\)"),
    ("r-*", "x, r-*", r"host pattern 'r-\*' is in two host groups"),
])
def test_a_host_two_groups_name_is_an_error_at_load(tmp_path, a_hosts, b_hosts, message):
    with pytest.raises(ValueError, match=message + ".*a host follows one recovery policy"):
        load(tmp_path, f"[host_group:a]\nhosts = {a_hosts}\n[host_group:b]\nhosts = {b_hosts}\n")


def test_patterns_of_two_groups_that_meet_only_in_some_names_load(tmp_path):
    # Which names two patterns share shows only once the hosts are known (HostGroups.check at the monitor's start).
    settings = load(tmp_path, "[host_group:a]\nhosts = rack1-*\n[host_group:b]\nhosts = *-gpu\n")
    assert set(settings.host_groups) == {"a", "b"}


# -- resolution --------------------------------------------------------------------------------------------------

def test_a_host_in_no_group_follows_the_monitor_options(tmp_path):
    # Hosts in no group keep the behaviour of one policy for all hosts.
    policy = HostGroups(load(tmp_path, TWO_GROUPS)).policy("compute7")
    assert (policy.source, policy.group, policy.recovery_method) == (MONITOR, None, "evacuate")
    assert policy.reserved_hosts == ("spare0",) and policy.evacuable_metadata_key == "ha"
    assert (policy.priority_metadata_key, policy.leave_disabled, policy.targets) == ("novalite:priority", False, "any")
    assert policy.cited() == {"policy": "[monitor]",
                              "policy_rule": "host-group: compute7 is in no [host_group:*]; the [monitor] policy"}


def test_a_group_overrides_what_it_sets_and_takes_the_rest_from_monitor(tmp_path):
    text = textwrap.dedent(TWO_GROUPS).replace("[monitor]\n", "[monitor]\nevacuable_extra_spec = hw:ha\n")
    settings = load(tmp_path, text)
    policy = HostGroups(settings).policy("gold-7")
    assert (policy.source, policy.group) == ("[host_group:gold]", "gold")
    assert policy.reserved_hosts == ("gold-spare",)
    assert policy.evacuable_metadata_key == ""  # set empty in the group: no metadata opt-in
    assert policy.evacuable_extra_spec == "hw:ha"  # not set in the group: [monitor]'s
    assert (policy.priority_metadata_key, policy.leave_disabled) == ("gold:priority", True)
    assert (policy.targets, policy.fallback) == ("group", "none")
    assert policy.cited()["policy_rule"] == "host-group: gold-7 is in [host_group:gold] (hosts 'gold-*')"
    assert policy.in_group("gold-spare") and policy.in_group("special1") and not policy.in_group("lab1")


def test_host_patterns_are_fnmatch_and_case_sensitive(tmp_path):
    groups = HostGroups(load(tmp_path, "[host_group:a]\nhosts = node[12], rack?-x\n"))
    assert [groups.policy(h).group for h in ("node1", "node2", "node3", "rack7-x", "rack10-x", "NODE1")] == [
        "a", "a", None, "a", None, None]


def test_a_notify_only_groups_summary_says_so_and_leaves_out_evacuation(tmp_path):
    summary = HostGroups(load(tmp_path, TWO_GROUPS)).policy("lab2").summary()
    assert summary == {"policy": "[host_group:lab]", "recovery_method": "notify",
                       "policy_rule": "host-group: lab2 is in [host_group:lab] (hosts 'lab2')"}


def test_a_host_two_groups_patterns_claim_is_ambiguous_and_refused_at_the_monitors_start(tmp_path):
    groups = HostGroups(load(tmp_path, "[host_group:a]\nhosts = rack1-*\n[host_group:b]\nhosts = *-gpu\n"))
    assert groups.policy("rack1-cpu").group == "a" and groups.policy("rack2-gpu").group == "b"
    with pytest.raises(AmbiguousHost, match=r"^host-group: rack1-gpu is in two host groups, \[host_group:a\] "
                                            r"\(hosts 'rack1-\*'\) and \[host_group:b\] \(hosts '\*-gpu'\)"):
        groups.policy("rack1-gpu")
    groups.check(["rack1-cpu", "rack2-gpu", "other"])
    with pytest.raises(ValueError, match=r"^rack1-gpu is in two host groups"):
        groups.check(["rack1-cpu", "rack1-gpu"])


# -- targets -----------------------------------------------------------------------------------------------------

def moves(*ram: int) -> list[Move]:
    return [Move(f"s{i}", "ACTIVE", 0, mb, 1) for i, mb in enumerate(ram)]


def test_spares_are_filled_first_in_order_then_the_scheduler_picks(tmp_path):
    # Masakari's rh_priority: reserved hosts first, then the scheduler (ha-anchors 1.2).
    policy = HostGroups(load(tmp_path, "[monitor]\nreserved_hosts = sp1, sp2\n")).policy("c1")
    room = {"sp1": Room(1024, 10, False), "sp2": Room(512, 10, False)}
    planned = moves(512, 512, 512, 512)
    for move in planned:
        pick(move, policy, room, ["sp1", "sp2"])
    assert [m.target for m in planned] == ["sp1", "sp1", "sp2", None]
    assert planned[0].target_rule == "reserved-host: sp1, a spare of [monitor], has room"
    assert planned[3].target_rule.startswith("scheduler: no spare of [monitor] has room, targets = any")
    assert not any(m.stranded for m in planned)


def test_targets_group_names_the_groups_host_with_most_free_ram(tmp_path):
    policy = HostGroups(load(tmp_path, "[host_group:g]\nhosts = g-*\ntargets = group\n")).policy("g-1")
    room = {"g-2": Room(2048, 10, True), "g-3": Room(1024, 10, True), "g-4": Room(4096, 0, True)}
    planned = moves(512, 512, 512, 512)
    for move in planned:
        pick(move, policy, room, [])
    # g-4 has the most RAM but no disk; g-2 while it has the most (a tie goes to the first by name), then g-3.
    assert [m.target for m in planned] == ["g-2", "g-2", "g-2", "g-3"]
    assert planned[0].target_rule == "group-host: g-2 of [host_group:g] has the most free RAM for it"


@pytest.mark.parametrize(("fallback", "stranded", "rule"), [
    ("scheduler", False, "fallback: no up and enabled host of [host_group:g] has room for it; fallback = scheduler"),
    ("none", True, "fallback: no up and enabled host of [host_group:g] has room for it; fallback = none"),
])
def test_a_full_group_falls_back_as_configured(tmp_path, fallback, stranded, rule):
    settings = load(tmp_path, f"[host_group:g]\nhosts = g-*\ntargets = group\nfallback = {fallback}\n")
    policy = HostGroups(settings).policy("g-1")
    move = moves(2048)[0]
    pick(move, policy, {"g-2": Room(1024, 10, True)}, [])
    assert (move.target, move.stranded) == (None, stranded)
    assert move.target_rule.startswith(rule)
