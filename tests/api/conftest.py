"""One real ``overture serve`` per store for the whole session; a fresh tenant per test.

``api`` is parametrised over SQLite and PostgreSQL, so every test that uses it runs against
both stores through real HTTP; pytest runs all of one store's tests, then the other's. Tests
cannot see each other's objects because each makes its own tenant, so one server per store is
enough (starting one costs seconds). A key exists before the server starts, so it requires
keys (development mode is tested on its own in ``test_serve``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from tests.api.helpers import APP, Api, StoreThread, Tenant, create_key
from tests.support.server import start_server

STORES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="session", params=STORES)
def database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str]]:
    """``(store, url)``: a fresh database of the store for the session."""
    if request.param == "sqlite":
        folder = tmp_path_factory.mktemp("sqlite")
        yield "sqlite", f"sqlite:///{folder / 'overture.db'}"
        return
    server = request.getfixturevalue("postgres_server")
    template = request.getfixturevalue("postgres_template")
    with server.fresh_database(template=template) as url:
        yield "postgres", url


@pytest.fixture(scope="session")
def api(database: tuple[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    store, url = database
    workdir = tmp_path_factory.mktemp(f"serve-{store}")
    db = StoreThread(url, workdir / "artifacts")
    create_key(db, "bootstrap", ("read",))  # any key: the server must require keys
    server = start_server(
        url,
        "--app",
        APP,
        cwd=workdir,
        env={"OVERTURE_ARTIFACTS_DIR": str(workdir / "artifacts")},
    )
    api = Api(store=store, url=server.url, server=server, db=db, workdir=workdir)
    try:
        yield api
    finally:
        api.open_all_gates()
        api.close()
        status = server.stop()
        db.close()
        if os.environ.get("OVERTURE_TEST_SERVER_LOG"):
            print(server.log)
        assert status == 0, f"overture serve exited with {status}:\n{server.log}"


@pytest.fixture
def tenant(api: Api) -> Tenant:
    """A tenant no other test uses, with a key of each scope."""
    return api.tenant()
