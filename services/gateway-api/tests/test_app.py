import pytest
from pydantic import BaseModel
from yourclaw_common.errors import Conflict, TooManyRequests


class Item(BaseModel):
    name: str
    count: int


@pytest.fixture
async def gateway_with_routes(start_gateway, js):
    """The gateway plus a few routes that raise what real endpoints will raise."""

    async with start_gateway() as gateway:
        api = gateway.app.api

        @api.post("/api/v1/test/items")
        async def create_item(item: Item) -> dict:
            return {"name": item.name}

        @api.get("/api/v1/test/conflict")
        async def conflict() -> None:
            raise Conflict("item exists", item_id="x")

        @api.get("/api/v1/test/limited")
        async def limited() -> None:
            raise TooManyRequests("slow down", headers={"retry-after": "7"})

        @api.get("/api/v1/test/crash")
        async def crash() -> None:
            raise RuntimeError("password=hunter2 in a stack trace")

        yield gateway


class TestCreateApp:
    async def test_unknown_api_route_is_json_404(self, gateway):
        response = await gateway.client.get("/api/v1/nope")

        assert response.status_code == 404
        assert response.json() == {"detail": "Not Found", "code": "NOT_FOUND"}

    async def test_wrong_method_is_json_405(self, gateway):
        response = await gateway.client.delete("/api/v1/health")

        assert response.status_code == 405
        assert response.json()["code"] == "METHOD_NOT_ALLOWED"

    async def test_http_error_is_rendered_with_its_status(self, gateway_with_routes):
        response = await gateway_with_routes.client.get("/api/v1/test/conflict")

        assert response.status_code == 409
        assert response.json() == {"detail": "item exists", "code": "CONFLICT"}

    async def test_http_error_headers_are_sent(self, gateway_with_routes):
        response = await gateway_with_routes.client.get("/api/v1/test/limited")

        assert response.status_code == 429
        assert response.headers["retry-after"] == "7"
        assert response.json()["code"] == "RATE_LIMITED"

    async def test_validation_error_is_422(self, gateway_with_routes):
        response = await gateway_with_routes.client.post(
            "/api/v1/test/items", json={"name": "a", "count": "many"}
        )

        assert response.status_code == 422
        body = response.json()
        assert set(body) == {"detail", "code"}
        assert body["code"] == "VALIDATION_ERROR"
        assert "body.count" in body["detail"]

    async def test_unexpected_error_leaks_nothing(self, gateway_with_routes):
        response = await gateway_with_routes.client.get("/api/v1/test/crash")

        assert response.status_code == 500
        assert response.json() == {"detail": "internal error", "code": "INTERNAL_ERROR"}

    async def test_metrics_are_served(self, gateway):
        response = await gateway.client.get("/metrics")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "yourclaw_gateway_api_webhook_requests_total" in response.text
