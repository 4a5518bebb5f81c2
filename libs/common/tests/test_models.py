from typing import get_args

from yourclaw_common.models import (
    AVAILABLE_MODELS,
    DEFAULT_MODEL,
    MODEL_IDS,
    LlmProvider,
    ModelId,
    is_available_model,
    model_info,
)

SEED_MODELS = [
    "anthropic/claude-sonnet-4-5-20250929",
    "anthropic/claude-opus-4-5-20251101",
    "anthropic/claude-haiku-4-5-20251001",
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "google/gemini-2.5-flash",
    "google/gemini-2.5-flash-lite",
]


class TestAvailableModels:
    def test_the_seed_models_in_the_seed_order(self):
        assert [m.id for m in AVAILABLE_MODELS] == SEED_MODELS
        assert list(get_args(ModelId)) == SEED_MODELS
        assert set(SEED_MODELS) == MODEL_IDS

    def test_the_default_is_sonnet(self):
        assert DEFAULT_MODEL == "anthropic/claude-sonnet-4-5-20250929"
        assert model_info(DEFAULT_MODEL).display_name == "Claude Sonnet 4.5"

    def test_each_model_names_its_provider(self):
        for model in AVAILABLE_MODELS:
            assert model.id.split("/")[0].upper() == model.provider.value

    def test_providers_are_the_byok_ones(self):
        assert {p.value for p in LlmProvider} == {"ANTHROPIC", "OPENAI", "GOOGLE"}


class TestIsAvailableModel:
    def test_known_and_unknown(self):
        assert is_available_model("openai/gpt-4o")
        assert not is_available_model("openai/gpt-5")
        assert not is_available_model("gpt-4o")
