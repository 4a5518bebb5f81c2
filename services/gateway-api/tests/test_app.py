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
    # Every error leaves as {"detail", "code"} with its status.
    @pytest.mark.parametrize(
        ("method", "path", "status", "code", "detail"),
        [
            ("GET", "/api/v1/nope", 404, "NOT_FOUND", "Not Found"),
            (
                "DELETE",
                "/api/v1/health",
                405,
                "METHOD_NOT_ALLOWED",
                "Method Not Allowed",
            ),
            ("GET", "/api/v1/test/conflict", 409, "CONFLICT", "item exists"),
            ("GET", "/api/v1/test/limited", 429, "RATE_LIMITED", "slow down"),
            # Nothing of the exception leaks.
            ("GET", "/api/v1/test/crash", 500, "INTERNAL_ERROR", "internal error"),
        ],
    )
    async def test_an_error_is_json_with_its_status(
        self, gateway_with_routes, method, path, status, code, detail
    ):
        response = await gateway_with_routes.client.request(method, path)

        assert response.status_code == status
        assert response.json() == {"detail": detail, "code": code}

    async def test_http_error_headers_are_sent(self, gateway_with_routes):
        response = await gateway_with_routes.client.get("/api/v1/test/limited")

        assert response.headers["retry-after"] == "7"

    async def test_validation_error_is_422(self, gateway_with_routes):
        response = await gateway_with_routes.client.post(
            "/api/v1/test/items", json={"name": "a", "count": "many"}
        )

        assert response.status_code == 422
        body = response.json()
        assert set(body) == {"detail", "code"}
        assert body["code"] == "VALIDATION_ERROR"
        assert "body.count" in body["detail"]

    async def test_metrics_are_served(self, gateway):
        response = await gateway.client.get("/metrics")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert "yourclaw_gateway_api_webhook_requests_total" in response.text
