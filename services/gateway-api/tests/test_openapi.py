from fastapi.routing import APIRoute
from yourclaw_gateway_api.app import create_app
from yourclaw_gateway_api.settings import GatewaySettings
from yourclaw_gateway_api.webhooks.telegram import TELEGRAM_WEBHOOK_PATH
from yourclaw_gateway_api.webhooks.twilio import (
    TWILIO_STATUS_PATH,
    TWILIO_WHATSAPP_PATH,
)


def document(**overrides):
    settings = GatewaySettings(_env_file=None, **overrides)
    app = create_app(settings)
    return app, app.api.openapi()


def operations(doc):
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


class TestOpenApiDocument:
    def test_every_route_is_documented(self):
        app, doc = document(
            yourclaw_env="dev", dev_login_enabled=True, dev_login_secret="d" * 40
        )

        for route in app.api.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                for method in route.methods:
                    assert method.lower() in doc["paths"][route.path], (
                        method,
                        route.path,
                    )

    def test_the_routes_answered_before_fastapi_are_documented(self):
        _, doc = document()

        assert "post" in doc["paths"][TWILIO_WHATSAPP_PATH]
        assert "get" in doc["paths"]["/healthz"]

    def test_dev_login_is_documented_only_when_served(self):
        _, off = document()
        _, on = document(
            yourclaw_env="dev", dev_login_enabled=True, dev_login_secret="d" * 40
        )

        assert "/api/v1/dev/login" not in off["paths"]
        assert "/api/v1/dev/login" in on["paths"]

    def test_every_operation_documents_its_shared_errors(self):
        _, doc = document(supabase_url="https://p.supabase.co")

        for path, method, operation in operations(doc):
            statuses = set(operation["responses"])
            if path != "/healthz":
                assert "500" in statuses, (method, path)
            if operation.get("security"):
                assert {"401", "503"} <= statuses, (method, path)
            if "requestBody" in operation:
                assert "413" in statuses, (method, path)
                # The lean Twilio handlers answer a bad form with 400, not 422;
                # so does the Telegram webhook, which reads its body itself.
                lean = path in (
                    TWILIO_WHATSAPP_PATH,
                    TWILIO_STATUS_PATH,
                    TELEGRAM_WEBHOOK_PATH,
                )
                assert "422" in statuses or lean, (method, path)
            if path.startswith("/api/v1/"):
                assert "429" in statuses, (method, path)
                assert "Retry-After" in operation["responses"]["429"]["headers"]

    def test_errors_are_documented_as_detail_and_code(self):
        _, doc = document()
        schemas = doc["components"]["schemas"]

        def resolved(schema):
            if "$ref" in schema:
                return schemas[schema["$ref"].rsplit("/", 1)[-1]]
            return schema

        for path, method, operation in operations(doc):
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = resolved(response["content"]["application/json"]["schema"])
                    assert {"detail", "code"} <= set(schema["required"]), (
                        method,
                        path,
                        status,
                    )
        assert "HTTPValidationError" not in schemas

    def test_authenticated_routes_declare_the_bearer_scheme(self):
        _, doc = document()

        assert doc["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        secured = {p for p, _, op in operations(doc) if op.get("security")}
        assert "/api/v1/users/me" in secured
        assert "/api/v1/models" not in secured
        assert not any(p.startswith("/api/v1/webhooks/") for p in secured)

    def test_byok_formats_are_in_the_document(self):
        _, doc = document()

        schemas = doc["components"]["schemas"]
        assert schemas["AnthropicKeyIn"]["properties"]["key"]["pattern"].startswith(
            "^sk-ant-"
        )
        assert schemas["ModelChange"]["properties"]["model"]["enum"]


class TestServedDocument:
    async def test_the_served_document_is_the_completed_one(self, api):
        response = await api.client.get("/openapi.json")

        assert response.status_code == 200
        assert response.json() == api.app.api.openapi()
        assert TWILIO_WHATSAPP_PATH in response.json()["paths"]
