"""Settings: defaults, the INI file, NOVALITE_* overrides and Nova's service_down_time rule (spec 4.4)."""

from __future__ import annotations

import pytest

from novalite import config

pytestmark = pytest.mark.no_database


def test_defaults_are_novas():
    # spec 4.4: report_interval 10, service_down_time 60
    settings = config.load(environ={"NOVALITE_API__AUTH_STRATEGY": "noauth2"})
    assert settings.DEFAULT.report_interval == 10
    assert settings.DEFAULT.service_down_time == 60
    assert settings.effective_service_down_time == 60


@pytest.mark.parametrize(
    ("report_interval", "down_time", "effective"), [(10, 10, 25), (10, 5, 25), (3, 7, 7), (4, 4, 10)]
)
def test_down_time_not_above_report_interval_is_overridden(report_interval, down_time, effective):
    # spec 4.4: service_down_time <= report_interval → int(report_interval * 2.5)
    settings = config.load(environ={"NOVALITE_API__AUTH_STRATEGY": "noauth2",
                                    "NOVALITE_REPORT_INTERVAL": str(report_interval),
                                    "NOVALITE_SERVICE_DOWN_TIME": str(down_time)})
    assert settings.effective_service_down_time == effective


def test_file_then_environment(tmp_path):
    conf = tmp_path / "novalite.conf"
    conf.write_text(
        "[DEFAULT]\nservice_down_time = 30\n"
        "[api]\nauth_strategy = token\nadmin_token_file = /tmp/t\n"
        "[database]\nconnection = sqlite:///from-file.sqlite\n"
        "[keystone_authtoken]\nauth_url = http://127.0.0.1:5000/v3\n"
    )
    settings = config.load(conf, environ={"NOVALITE_DATABASE__CONNECTION": "postgresql://u@h/db"})
    assert settings.DEFAULT.service_down_time == 30
    assert settings.api.admin_token_file == "/tmp/t"
    assert settings.database.connection == "postgresql://u@h/db"
    assert settings.keystone_authtoken == {"auth_url": "http://127.0.0.1:5000/v3"}


@pytest.mark.parametrize(("environ", "message"), [
    ({"NOVALITE_API__AUTH_STRATEGY": "open"}, "auth_strategy must be one of"),
    ({"NOVALITE_API__AUTH_STRATEGY": "token"}, "needs [api] admin_token_file"),
    ({"NOVALITE_API__NOPE": "1"}, "unknown option [api] nope"),
    ({"NOVALITE_NOSUCHGROUP__X": "1"}, "unknown option group [nosuchgroup]"),
    ({"NOVALITE_REPORT_INTERVAL": "soon"}, "could not convert"),
    ({"NOVALITE_DATABASE__MAX_POOL_SIZE": "0"}, "[database] max_pool_size must be at least 1"),
    ({"NOVALITE_DATABASE__MAX_OVERFLOW": "-1"}, "[database] max_overflow must not be negative"),
    ({"NOVALITE_DATABASE__POOL_TIMEOUT": "0"}, "[database] pool_timeout must be greater than 0"),
    ({"NOVALITE_DATABASE__CONNECTION_RECYCLE_TIME": "0"}, "[database] connection_recycle_time must be greater"),
])
def test_bad_settings_are_refused_clearly(environ, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.load(environ={"NOVALITE_API__AUTH_STRATEGY": "noauth2", **environ})


def test_embedded_default_is_not_open():
    # The default strategy needs a token: nothing is served without one.
    with pytest.raises(ValueError, match="admin_token_file"):
        config.load(environ={})


def test_compute_defaults():
    # Issue 3 §1: the simulated driver by default, spawn and stop times 0; Nova's reserved_host_memory_mb 512.
    settings = config.load(environ={"NOVALITE_API__AUTH_STRATEGY": "noauth2"})
    c = settings.compute
    assert (c.compute_driver, c.state_path) == ("simulated", "")
    assert (c.vcpus, c.memory_mb, c.local_gb) == (16, 32768, 500)
    assert (c.reserved_host_memory_mb, c.reserved_host_disk_mb) == (512, 0)
    assert (c.spawn_time, c.stop_time) == (0, 0)
    assert settings.DEFAULT.update_resources_interval == 60


def test_compute_options_from_file_and_environment(tmp_path):
    conf = tmp_path / "novalite.conf"
    conf.write_text("[DEFAULT]\nupdate_resources_interval = 5\n"
                    "[compute]\nvcpus = 64\nmemory_mb = 262144\nspawn_time = 0.5\nstate_path = /var/lib/nl\n")
    settings = config.load(conf, environ={"NOVALITE_API__AUTH_STRATEGY": "noauth2",
                                          "NOVALITE_COMPUTE__STOP_TIME": "1.5",
                                          "NOVALITE_COMPUTE__RESERVED_HOST_MEMORY_MB": "0"})
    c = settings.compute
    assert (c.vcpus, c.memory_mb, c.spawn_time, c.stop_time, c.reserved_host_memory_mb) == (64, 262144, 0.5, 1.5, 0)
    assert settings.DEFAULT.update_resources_interval == 5
    assert str(settings.compute_state_dir("compute1", tmp_path)) == "/var/lib/nl/compute1"


def test_compute_state_dir_defaults_beside_the_config_file_else_the_working_directory(tmp_path, monkeypatch):
    settings = config.load(environ={"NOVALITE_API__AUTH_STRATEGY": "noauth2"})
    assert settings.compute_state_dir("compute1", tmp_path) == tmp_path / ".novalite-compute" / "compute1"
    monkeypatch.chdir(tmp_path)
    assert settings.compute_state_dir("compute2") == tmp_path / ".novalite-compute" / "compute2"


@pytest.mark.parametrize(("environ", "message"), [
    ({"NOVALITE_UPDATE_RESOURCES_INTERVAL": "0"}, "update_resources_interval must be greater than 0"),
    ({"NOVALITE_COMPUTE__VCPUS": "-1"}, "[compute] vcpus must not be negative"),
    ({"NOVALITE_COMPUTE__SPAWN_TIME": "-0.5"}, "[compute] spawn_time must not be negative"),
    ({"NOVALITE_COMPUTE__MEMORY_MB": "lots"}, "invalid literal"),
])
def test_bad_compute_settings_are_refused_clearly(environ, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config.load(environ={"NOVALITE_API__AUTH_STRATEGY": "noauth2", **environ})
