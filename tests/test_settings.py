"""Settings from the environment: defaults, every knob, and one clear message per bad value."""

import re

import pytest

from service.settings import Settings, SettingsError

URL = "postgresql://app@127.0.0.1:5432/enrollment"


def test_only_the_database_url_is_required() -> None:
    settings = Settings.from_env({"DATABASE_URL": URL})
    assert settings == Settings(database_url=URL)
    assert settings.random_page_cost == 1.1
    assert settings.access_log is True
    assert settings.auth is True  # never off by default


def test_every_variable_is_read() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": URL,
            "HOST": "0.0.0.0",
            "PORT": "9000",
            "WORKERS": "3",
            "DB_POOL_MIN": "0",
            "DB_POOL_MAX": "4",
            "DB_STATEMENT_TIMEOUT_MS": "500",
            "DB_ACQUIRE_TIMEOUT_S": "0.25",
            "DB_CONNECT_TIMEOUT_S": "7",
            "DB_STATEMENT_CACHE_SIZE": "0",
            "DB_RANDOM_PAGE_COST": "4",
            "ACCESS_LOG": "off",
            "AUTH": "off",
            "AUTH_REFRESH_S": "0.5",
            "DATABASE_READ_URL": "postgresql://app@replica:5432/enrollment",
            "DB_READ_MAX_LAG_MS": "250",
            "SHUTDOWN_DRAIN_S": "2.5",
        }
    )
    assert settings == Settings(
        database_url=URL,
        host="0.0.0.0",
        port=9000,
        workers=3,
        pool_min_size=0,
        pool_max_size=4,
        statement_timeout_ms=500,
        pool_acquire_timeout_s=0.25,
        connect_timeout_s=7.0,
        statement_cache_size=0,
        random_page_cost=4.0,
        access_log=False,
        auth=False,
        auth_refresh_s=0.5,
        database_read_url="postgresql://app@replica:5432/enrollment",
        read_max_lag_ms=250,
        shutdown_drain_s=2.5,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DATABASE_URL", "", "DATABASE_URL is not set"),
        ("DATABASE_URL", "mysql://x@h/db", "must start with postgresql://"),
        ("DATABASE_URL", "postgresql://x@h:99999/db", "DATABASE_URL is malformed"),
        ("DATABASE_URL", "postgresql://x@h:5432", "names no database"),
        ("PORT", "http", "PORT must be an integer, not 'http'"),
        ("AUTH", "maybe", "AUTH must be true or false, not 'maybe'"),
        ("AUTH_REFRESH_S", "10", "AUTH_REFRESH_S must be between 0 and 5 seconds"),
        ("PORT", "70000", "PORT must be between 1 and 65535"),
        ("WORKERS", "0", "WORKERS must be between 1 and 64"),
        ("DB_ACQUIRE_TIMEOUT_S", "soon", "DB_ACQUIRE_TIMEOUT_S must be a number of seconds"),
        ("DB_ACQUIRE_TIMEOUT_S", "0", "DB_ACQUIRE_TIMEOUT_S must be between 0 and 600 seconds"),
        ("DB_CONNECT_TIMEOUT_S", "nan", "DB_CONNECT_TIMEOUT_S must be between 0 and 600 seconds"),
        ("DB_RANDOM_PAGE_COST", "cheap", "DB_RANDOM_PAGE_COST must be a number, not 'cheap'"),
        ("DB_RANDOM_PAGE_COST", "-1", "DB_RANDOM_PAGE_COST must be between 0 and 1000"),
        ("DB_RANDOM_PAGE_COST", "inf", "DB_RANDOM_PAGE_COST must be between 0 and 1000"),
        ("ACCESS_LOG", "maybe", "ACCESS_LOG must be true or false"),
        ("DB_POOL_MIN", "20", "DB_POOL_MIN must not exceed DB_POOL_MAX"),
        ("DATABASE_READ_URL", "replica:5432", "DATABASE_READ_URL must start with postgresql://"),
        ("DATABASE_READ_URL", "postgresql://x@replica", "DATABASE_READ_URL names no database"),
        ("DB_READ_MAX_LAG_MS", "0", "DB_READ_MAX_LAG_MS must be between 1 and 3600000"),
        ("SHUTDOWN_DRAIN_S", "-1", "SHUTDOWN_DRAIN_S must be between 0 and 60 seconds"),
    ],
)
def test_a_bad_value_is_named_in_one_message(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)) as raised:
        Settings.from_env({"DATABASE_URL": URL, name: value})
    assert "\n" not in str(raised.value)


def test_a_drain_of_zero_seconds_is_allowed_and_the_default() -> None:
    assert Settings.from_env({"DATABASE_URL": URL, "SHUTDOWN_DRAIN_S": "0"}).shutdown_drain_s == 0
    assert Settings.from_env({"DATABASE_URL": URL}).shutdown_drain_s == 0
