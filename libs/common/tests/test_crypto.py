import pytest
from yourclaw_common.crypto import SecretBox, SecretBoxError, generate_key


class TestSecretBox:
    def test_round_trip_for_its_owner(self):
        box = SecretBox(generate_key())
        token = box.encrypt("sk-ant-123", owner="user-a")
        assert "sk-ant-123" not in token
        assert box.decrypt(token, owner="user-a") == "sk-ant-123"

    def test_token_moved_to_another_owner_is_refused(self):
        box = SecretBox(generate_key())
        token = box.encrypt("gateway-token", owner="user-a")
        with pytest.raises(SecretBoxError, match="another owner"):
            box.decrypt(token, owner="user-b")

    def test_rotation_keeps_old_tokens_readable_and_rewrites_them(self):
        old, new = generate_key(), generate_key()
        token = SecretBox(old).encrypt("secret", owner="u")
        rotating = SecretBox(f"{new},{old}")
        assert rotating.decrypt(token, owner="u") == "secret"
        rotated = rotating.rotate(token)
        assert SecretBox(new).decrypt(rotated, owner="u") == "secret"
        with pytest.raises(SecretBoxError):
            SecretBox(old).decrypt(rotated, owner="u")

    def test_retired_key_cannot_read(self):
        token = SecretBox(generate_key()).encrypt("secret", owner="u")
        with pytest.raises(SecretBoxError):
            SecretBox(generate_key()).decrypt(token, owner="u")

    def test_empty_key_is_a_configuration_error(self):
        with pytest.raises(ValueError, match="ENCRYPTION_KEY"):
            SecretBox("")
