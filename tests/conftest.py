"""Shared fixtures: isolated settings, and a fresh database on the real PostgreSQL server.

Postgres tests run against the server at 127.0.0.1:5432 (override with
AITRADER_TEST_POSTGRES_ADMIN_URL). Each test gets a database of its own,
dropped afterwards, so no test sees another's candles or threads. In CI (CI=true) an unreachable server fails the tests;
elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from state import Settings

# Fixture modules: the webhook receiver and the headless browser.
pytest_plugins = ["tests.webhook_receiver", "tests.browser_support"]

ADMIN_URL = os.environ.get("AITRADER_TEST_POSTGRES_ADMIN_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _with_database(url: str, database: str) -> str:
    return url.rsplit("/", 1)[0] + "/" + database


@pytest.fixture
def postgres_url() -> Iterator[str]:
    database = f"aitrader_test_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'CREATE DATABASE "{database}"')
    except psycopg.OperationalError as error:
        message = f"PostgreSQL unreachable at {ADMIN_URL}: {error}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message + " (set CI=true to make this a failure)")
    yield _with_database(ADMIN_URL, database)
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    """Settings that ignore the developer's environment and `.env`, rooted in a temp dir."""

    def build(**overrides: Any) -> Settings:
        return Settings(_env_file=None, home=tmp_path / "home", **overrides)

    return build


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend_settings(request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Settings:
    """The same test on the embedded SQLite file and on the real PostgreSQL server."""
    if request.param == "postgres":
        return make_settings(database_url=request.getfixturevalue("postgres_url"))
    return make_settings()


@pytest.fixture
def pg_settings(make_settings: Callable[..., Settings], postgres_url: str) -> Settings:
    """The real PostgreSQL server, LLM off (no Ollama here): what the API tests run against."""
    return make_settings(database_url=postgres_url, llm_enabled=False)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def cli_env(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, str]:
    """The environment of an `aitrader` process: a home of its own, and the test database for Postgres."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADER_")}
    env["AITRADER_HOME"] = str(tmp_path / "home")
    if request.param == "postgres":
        env["AITRADER_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    return env
