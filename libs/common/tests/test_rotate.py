"""Key rotation: after `yourclaw-rotate-secrets` with `new,old`, every stored
secret opens with the new key alone and still belongs to its owner."""

import uuid

import pytest
from yourclaw_common.crypto import SecretBox, SecretBoxError, generate_key
from yourclaw_common.rotate import rotate_secrets


async def test_every_stored_secret_moves_to_the_new_key(db_conn):
    old, new = generate_key(), generate_key()
    before = SecretBox(old)
    user_id = uuid.uuid4()
    owner = str(user_id)
    await db_conn.execute("INSERT INTO users (id) VALUES ($1)", user_id)
    await db_conn.execute(
        "INSERT INTO api_keys (user_id, provider, encrypted_key, key_last4) "
        "VALUES ($1, 'OPENAI', $2, 'abcd')",
        user_id,
        before.encrypt("sk-user-key", owner=owner),
    )
    await db_conn.execute(
        "INSERT INTO assistants (user_id, gateway_token_encrypted, "
        "notify_secret_encrypted) VALUES ($1, $2, NULL)",
        user_id,
        before.encrypt("gw-token", owner=owner),
    )

    counts = await rotate_secrets(db_conn, SecretBox(f"{new},{old}"))

    assert counts["api_keys.encrypted_key"] >= 1
    assert counts["assistants.gateway_token_encrypted"] >= 1
    after = SecretBox(new)
    key = await db_conn.fetchval(
        "SELECT encrypted_key FROM api_keys WHERE user_id = $1", user_id
    )
    token = await db_conn.fetchval(
        "SELECT gateway_token_encrypted FROM assistants WHERE user_id = $1", user_id
    )
    assert after.decrypt(key, owner=owner) == "sk-user-key"
    assert after.decrypt(token, owner=owner) == "gw-token"
    with pytest.raises(SecretBoxError):
        before.decrypt(token, owner=owner)  # the old key can be dropped
