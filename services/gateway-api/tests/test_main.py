import logging

import pytest
import uvicorn
from yourclaw_gateway_api import __main__ as entry
from yourclaw_gateway_api.app import GatewayApp, app_factory


@pytest.fixture(autouse=True)
def root_logger_restored():
    # run() and app_factory() configure the process's logging; undo it for pytest.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class TestRun:
    def test_one_worker_serves_the_app_object(self, monkeypatch):
        calls = []
        monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
        monkeypatch.setenv("API_PORT", "9123")
        monkeypatch.delenv("API_WORKERS", raising=False)

        entry.run()

        ((app, options),) = calls
        assert isinstance(app, GatewayApp)
        assert options["port"] == 9123
        assert options["workers"] == 1
        assert options["factory"] is False
        assert (options["loop"], options["http"]) == ("uvloop", "httptools")
        assert options["access_log"] is False

    def test_workers_import_the_factory(self, monkeypatch):
        calls = []
        monkeypatch.setattr(uvicorn, "run", lambda app, **kw: calls.append((app, kw)))
        monkeypatch.setenv("API_WORKERS", "2")

        entry.run()

        ((app, options),) = calls
        assert app == "yourclaw_gateway_api.app:app_factory"
        assert options["factory"] is True
        assert options["workers"] == 2
        assert isinstance(app_factory(), GatewayApp)
