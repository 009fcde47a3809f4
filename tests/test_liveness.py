"""How up/down is computed, heartbeats and restarts (spec section 4)."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from novalite import config
from novalite.domain.liveness import is_up
from novalite.timeutils import utcnow
from tests.api_client import AGENT_SECRET, Api

NOW = dt.datetime(2026, 8, 21, 12, 0, 0)
CREATED = NOW - dt.timedelta(days=1)


NOAUTH = {"NOVALITE_API__AUTH_STRATEGY": "noauth2"}


def up(*, last_seen_up=None, created_at=CREATED, forced_down=False, service_down_time=60.0, now=NOW) -> bool:
    return is_up(forced_down=forced_down, last_seen_up=last_seen_up, created_at=created_at,
                 service_down_time=service_down_time, now=now)


# -- 4.1 / 4.2 the db driver's rule ---------------------------------------------------------------

def test_forced_down_wins_over_a_fresh_heartbeat():
    # spec 4.1: forced_down is checked first
    assert up(last_seen_up=NOW) is True
    assert up(last_seen_up=NOW, forced_down=True) is False
    assert up(last_seen_up=None, created_at=NOW, forced_down=True) is False


def test_bound_is_inclusive():
    # spec 4.2: up when |now - heartbeat| <= service_down_time
    assert up(last_seen_up=NOW - dt.timedelta(seconds=60)) is True
    assert up(last_seen_up=NOW - dt.timedelta(seconds=60, microseconds=1)) is False
    assert up(last_seen_up=NOW - dt.timedelta(seconds=25), service_down_time=25) is True


def test_difference_is_absolute_so_clock_skew_counts_as_up():
    # spec 4.2: a heartbeat up to service_down_time in the future also counts as up
    assert up(last_seen_up=NOW + dt.timedelta(seconds=60)) is True
    assert up(last_seen_up=NOW + dt.timedelta(seconds=60, microseconds=1)) is False


def test_created_at_is_the_heartbeat_until_the_first_one():
    # spec 4.2: last_seen_up if set, else created_at
    assert up(last_seen_up=None, created_at=NOW - dt.timedelta(seconds=59)) is True
    assert up(last_seen_up=None, created_at=NOW - dt.timedelta(seconds=61)) is False
    # once there is a heartbeat, created_at no longer matters
    assert up(last_seen_up=NOW - dt.timedelta(seconds=61), created_at=NOW) is False
    assert up(last_seen_up=NOW, created_at=NOW - dt.timedelta(days=30)) is True


def test_aware_timestamps_are_compared_as_naive_utc():
    # spec 4.2: object timestamps have their timezone dropped and are treated as naive UTC
    plus_two = dt.timezone(dt.timedelta(hours=2))
    heartbeat = dt.datetime(2026, 8, 21, 13, 59, 30, tzinfo=plus_two)  # 11:59:30 UTC
    assert up(last_seen_up=heartbeat) is True
    assert up(last_seen_up=heartbeat, now=dt.datetime(2026, 8, 21, 12, 0, 31)) is False
    assert up(last_seen_up=NOW - dt.timedelta(seconds=30), now=NOW.replace(tzinfo=dt.UTC)) is True


# -- 4.4 defaults and the override ----------------------------------------------------------------

def test_defaults_are_novas():
    # spec 4.4: report_interval = 10, service_down_time = 60
    settings = config.load(environ=NOAUTH)
    assert (settings.DEFAULT.report_interval, settings.DEFAULT.service_down_time) == (10, 60)
    assert settings.effective_service_down_time == 60


@pytest.mark.parametrize(("report_interval", "service_down_time", "effective"), [
    (10, 60, 60), (10, 10.5, 10.5), (10, 10, 25), (10, 5, 25), (7, 7, 17), (30, 20, 75), (3, 1, 7),
])
def test_service_down_time_not_above_report_interval_becomes_two_and_a_half_intervals(
        report_interval, service_down_time, effective):
    # spec 4.4: if service_down_time <= report_interval it becomes int(report_interval * 2.5)
    settings = config.load(environ={**NOAUTH, "NOVALITE_REPORT_INTERVAL": str(report_interval),
                                    "NOVALITE_SERVICE_DOWN_TIME": str(service_down_time)})
    assert settings.effective_service_down_time == effective


def test_override_logs_a_warning(caplog):
    # spec 4.4: ... and logs a warning
    with caplog.at_level(logging.WARNING, logger="novalite.config"):
        config.load(environ={**NOAUTH, "NOVALITE_REPORT_INTERVAL": "10", "NOVALITE_SERVICE_DOWN_TIME": "10"})
    assert any("service_down_time" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="novalite.config"):
        config.load(environ={**NOAUTH, "NOVALITE_REPORT_INTERVAL": "10", "NOVALITE_SERVICE_DOWN_TIME": "60"})
    assert caplog.records == []


# -- the rule as the API applies it ----------------------------------------------------------------

@pytest.fixture
def api(tmp_path) -> Api:
    return Api(tmp_path)


def state_of(api: Api, host: str) -> str:
    (service,) = [s for s in api.services() if s["host"] == host]
    return service["state"]


def test_brand_new_service_is_up_before_its_first_heartbeat(api):
    # spec 4.2: created_at counts as the heartbeat, so a new service shows up for service_down_time
    created = api.compute("h1")
    assert created["state"] == "up"
    assert state_of(api, "h1") == "up"
    api.set_times(created["id"], created_at=utcnow() - dt.timedelta(seconds=90))
    assert state_of(api, "h1") == "down"


def test_api_state_follows_last_seen_up_never_updated_at(api):
    # spec 4.2: never updated_at — an admin change does not make a silent service "up"
    created = api.compute("h1")
    api.set_times(created["id"], created_at=utcnow() - dt.timedelta(days=1),
                  last_seen_up=utcnow() - dt.timedelta(seconds=120))
    assert state_of(api, "h1") == "down"
    result = api.put(f"/v2.1/os-services/{created['id']}", {"status": "disabled"}, version="2.53")
    assert result.json["service"]["state"] == "down"
    assert api.heartbeat(created["id"]).status_code == 204
    assert state_of(api, "h1") == "up"


def test_api_uses_the_overridden_down_time(tmp_path):
    # spec 4.4: report_interval 30, service_down_time 20 → 75 s
    api = Api(tmp_path, env={"NOVALITE_REPORT_INTERVAL": "30", "NOVALITE_SERVICE_DOWN_TIME": "20"})
    created = api.compute("h1")
    api.set_times(created["id"], last_seen_up=utcnow() - dt.timedelta(seconds=70))
    assert state_of(api, "h1") == "up"
    api.set_times(created["id"], last_seen_up=utcnow() - dt.timedelta(seconds=80))
    assert state_of(api, "h1") == "down"


def test_heartbeat_in_the_future_within_down_time_is_up_through_the_api(api):
    # spec 4.2: clock skew
    created = api.compute("h1")
    api.set_times(created["id"], last_seen_up=utcnow() + dt.timedelta(seconds=30))
    assert state_of(api, "h1") == "up"
    api.set_times(created["id"], last_seen_up=utcnow() + dt.timedelta(seconds=120))
    assert state_of(api, "h1") == "down"


def test_forced_down_is_down_despite_heartbeats_and_disabled_stays_up(api):
    # spec 4.6: forced_down → "down"; spec 4.7: disabled does not affect state
    created = api.compute("h1")
    api.put(f"/v2.1/os-services/{created['id']}", {"status": "disabled"}, version="2.53")
    assert state_of(api, "h1") == "up"
    api.put(f"/v2.1/os-services/{created['id']}", {"forced_down": True}, version="2.53")
    assert api.heartbeat(created["id"]).status_code == 204
    assert state_of(api, "h1") == "down"


# -- 4.3 heartbeats -------------------------------------------------------------------------------

def test_heartbeat_bumps_report_count_and_last_seen_up_only(api):
    # spec 4.3: report_count +1, last_seen_up = now, updated_at moves; never forced_down or disabled
    created = api.compute("h1")
    api.put(f"/v2.1/os-services/{created['id']}",
            {"status": "disabled", "disabled_reason": "r", "forced_down": True}, version="2.53")
    before = api.rows()[0]
    assert api.heartbeat(created["id"]).status_code == 204
    after = api.rows()[0]
    assert after["report_count"] == before["report_count"] + 1
    assert after["last_seen_up"] is not None and after["updated_at"] >= before["updated_at"]
    assert (after["forced_down"], after["disabled"], after["disabled_reason"]) == (True, True, "r")


def test_heartbeat_of_a_deleted_service_fails_and_does_not_recreate_it(api):
    # spec 4.3: if the row has been deleted, the heartbeat does not recreate it
    created = api.compute("h1")
    assert api.delete(f"/v2.1/os-services/{created['id']}", version="2.53").status_code == 204
    assert api.heartbeat(created["id"]).status_code == 404
    assert api.services() == []
    assert len(api.rows()) == 1


def test_agent_interface_needs_the_agent_secret(api):
    # the public way services come to exist is authenticated by the agents' shared secret
    assert api.register("h1", secret="wrong").status_code == 401
    assert api.services() == []
    created = api.compute("h1")
    assert api.heartbeat(created["id"], secret="wrong").status_code == 401


def test_a_work_poll_needs_the_secret_and_a_live_service(api):
    # GET .../work reads the service and its host's work on one connection (HostWork.pending): the secret is
    # checked first, a deleted service is the heartbeat's 404, and a host with nothing to do gets no tasks.
    created = api.compute("h1")

    def poll(secret: str = AGENT_SECRET):
        return api.client.simulate_get(f"/agent/v1/services/{created['id']}/work", headers={"X-Agent-Token": secret})

    assert poll("wrong").status_code == 401
    assert (poll().status_code, poll().json) == (200, {"tasks": []})
    api.delete(f"/v2.1/os-services/{created['id']}", version="2.53")
    gone = poll()
    assert (gone.status_code, gone.json) == (404, api.heartbeat(created["id"]).json)
    assert gone.json == {"itemNotFound": {"code": 404, "message": f"Service {created['id']} could not be found."}}


# -- 4.5 restarts ---------------------------------------------------------------------------------

def test_restart_keeps_forced_down_disabled_and_reason(api):
    # spec 4.5: a restarting service loads its row; forced_down, disabled, disabled_reason persist
    created = api.compute("h1")
    api.put(f"/v2.1/os-services/{created['id']}",
            {"status": "disabled", "disabled_reason": "fenced", "forced_down": True}, version="2.53")
    again = api.register("h1", version=1).json["service"]
    assert again["id"] == created["id"]
    assert (again["forced_down"], again["status"], again["disabled_reason"], again["state"]) == (
        True, "disabled", "fenced", "down")
    assert len(api.rows()) == 1


def test_restart_updates_only_the_version(api):
    # spec 4.5: only `version` changes if the code version changed (with updated_at, and novalite's row_version,
    # which counts the row's updates: the first UPDATE is this one)
    api.compute("h1")
    before = api.rows()[0]
    api.register("h1", version=1)
    assert api.rows()[0] == before
    api.register("h1", version=2)
    after = api.rows()[0]
    assert (after["version"], after["row_version"]) == (2, before["row_version"] + 1)
    assert {k: v for k, v in after.items() if k not in ("version", "updated_at", "row_version")} == {
        k: v for k, v in before.items() if k not in ("version", "updated_at", "row_version")}


def test_restart_after_delete_creates_a_fresh_row(api):
    # spec 4.5 / 3.5: no row → a new one: report_count 0, new UUID, disabled and forced_down false
    created = api.compute("h1")
    api.put(f"/v2.1/os-services/{created['id']}", {"status": "disabled", "forced_down": True}, version="2.53")
    api.delete(f"/v2.1/os-services/{created['id']}", version="2.53")
    fresh = api.compute("h1")
    assert fresh["id"] != created["id"]
    assert (fresh["status"], fresh["forced_down"], fresh["disabled_reason"]) == ("enabled", False, None)
    row = [r for r in api.rows() if r["deleted"] == 0][0]
    assert (row["report_count"], row["disabled"], row["forced_down"]) == (0, False, False)
    assert [s["id"] for s in api.services()] == [fresh["id"]]
