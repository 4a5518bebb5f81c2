import httpx
import pytest
from yourclaw_common.embedded import free_port
from yourclaw_common.metrics import runner_metrics
from yourclaw_common.ops import serve_ops


@pytest.fixture
def ready_state():
    return {"postgres": True, "nats": True}


@pytest.fixture
async def ops_url(ready_state):
    runner_metrics("ops-test").consumed.labels("c", "s", "acked").inc()

    async def ready():
        return dict(ready_state)

    port = free_port()
    server = await serve_ops("127.0.0.1", port, ready)
    yield f"http://127.0.0.1:{port}"
    server.close()
    await server.wait_closed()


class TestServeOps:
    async def test_healthz_and_metrics(self, ops_url):
        async with httpx.AsyncClient(base_url=ops_url) as client:
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert "yourclaw_ops_test_events_consumed_total" in metrics.text

    async def test_readyz_names_what_is_down(self, ops_url, ready_state):
        async with httpx.AsyncClient(base_url=ops_url) as client:
            assert (await client.get("/readyz")).status_code == 200
            ready_state["nats"] = False
            resp = await client.get("/readyz")
            assert resp.status_code == 503
            assert resp.json()["checks"] == {"postgres": True, "nats": False}

    async def test_unknown_path_is_a_json_404(self, ops_url):
        async with httpx.AsyncClient(base_url=ops_url) as client:
            resp = await client.get("/nope")
            assert resp.status_code == 404
            assert resp.json()["code"] == "NOT_FOUND"
