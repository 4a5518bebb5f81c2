"""Fernet encryption of secrets at rest, bound to their owner.

Fernet has no associated data, so a token copied into another tenant's row would
decrypt there. We put the owner's id inside the plaintext and check it on the
way out.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from yourclaw_common.errors import PermanentError

__all__ = ["SecretBox", "SecretBoxError", "generate_key"]

_SEPARATOR = b"\x1f"


class SecretBoxError(PermanentError):
    """A ciphertext could not be opened: wrong key, tampered, or another owner's."""

    code = "SECRET_UNREADABLE"


def generate_key() -> str:
    """A new Fernet key as text."""
    return Fernet.generate_key().decode()


class SecretBox:
    """Encrypts with the first key, decrypts with any (MultiFernet rotation)."""

    def __init__(self, keys: str | list[str]):
        if isinstance(keys, str):
            keys = [k.strip() for k in keys.split(",") if k.strip()]
        if not keys:
            raise ValueError("ENCRYPTION_KEY is empty: set at least one Fernet key")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in keys])

    def encrypt(self, plaintext: str, *, owner: str) -> str:
        data = owner.encode() + _SEPARATOR + plaintext.encode()
        return self._fernet.encrypt(data).decode()

    def decrypt(self, token: str, *, owner: str) -> str:
        try:
            data = self._fernet.decrypt(token.encode())
        except InvalidToken as exc:
            raise SecretBoxError(
                "ciphertext cannot be decrypted with the configured keys"
            ) from exc
        bound, sep, plaintext = data.partition(_SEPARATOR)
        if not sep or bound != owner.encode():
            raise SecretBoxError("ciphertext belongs to another owner")
        return plaintext.decode()

    def rotate(self, token: str) -> str:
        """Re-encrypt under the newest key, keeping the owner binding."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretBoxError(
                "ciphertext cannot be decrypted with the configured keys"
            ) from exc
