"""Container specs sealed to the key of the one host that runs them.

A spec's `files` and `env` hold an assistant's secrets (its gateway token, its
LLM proxy credential, its notify secret). The provisioner seals them to the
host's public key before the create crosses the bus, so a NATS operator,
another host, or anyone reading the traffic sees ciphertext; only the host
holding the private key opens it.

HPKE (RFC 9180) base mode: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
ChaCha20-Poly1305, from `cryptography`, so nothing is hand-rolled. A fresh
ephemeral key per seal; the HPKE `info` binds the box to the container name and
spec hash, so a box cannot be moved into another user's spec. Each host-agent
makes its X25519 key pair at first start (`HostKey.load_or_create`, the
private key in its data dir, mode 0600) and announces the public key in its
heartbeat.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from pydantic import BaseModel, ConfigDict, ValidationError

from yourclaw_common.errors import PermanentError
from yourclaw_common.events.schemas.host import ContainerSpec, SealedSecrets

__all__ = [
    "HOST_KEY_FILE",
    "HostKey",
    "HostKeyError",
    "SealedForAnotherKey",
    "SpecUnreadable",
    "key_id",
    "seal_spec",
]

# In the host-agent's data dir, beside the per-user folders (never mounted
# into a tenant's container).
HOST_KEY_FILE = ".host-key"

_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_KEY_BYTES = 32


class SpecUnreadable(PermanentError):
    """A sealed spec does not open: tampered, or not sealed for this container."""

    code = "SEALED_SPEC_UNREADABLE"


class SealedForAnotherKey(SpecUnreadable):
    """A spec sealed to a key this host does not hold (its key changed)."""

    code = "SEALED_FOR_ANOTHER_KEY"


class HostKeyError(RuntimeError):
    """The host's key file is unusable; the agent does not start with it."""


class _Secrets(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    files: dict[str, str]
    env: dict[str, str]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode())


def _public_key(text: str) -> X25519PublicKey:
    try:
        raw = _unb64(text)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a host public key is base64url") from exc
    if len(raw) != _KEY_BYTES:
        raise ValueError(f"a host public key is {_KEY_BYTES} bytes")
    return X25519PublicKey.from_public_bytes(raw)


def key_id(public_key: str) -> str:
    """A short, stable name of a host public key, for logs and the sealed box."""
    raw = _public_key(public_key).public_bytes_raw()
    return hashlib.sha256(raw).hexdigest()[:16]


def _info(spec: ContainerSpec) -> bytes:
    return f"yourclaw/container-spec/v1\x00{spec.name}\x00{spec.spec_hash}".encode()


def seal_spec(spec: ContainerSpec, public_key: str) -> ContainerSpec:
    """The spec with its `files` and `env` sealed to `public_key` (the spec
    hash, computed over the clear content, stays)."""
    plain = _Secrets(files=spec.files, env=spec.env).model_dump_json().encode()
    box = _SUITE.encrypt(plain, _public_key(public_key), info=_info(spec))
    sealed = SealedSecrets(key_id=key_id(public_key), box=_b64(box))
    return spec.model_copy(update={"files": {}, "env": {}, "sealed": sealed})


class HostKey:
    """A host's X25519 private key; opens the specs sealed to it."""

    def __init__(self, private: X25519PrivateKey):
        self._private = private
        self.public_key = _b64(private.public_key().public_bytes_raw())
        self.key_id = key_id(self.public_key)

    @classmethod
    def generate(cls) -> HostKey:
        return cls(X25519PrivateKey.generate())

    @classmethod
    def load_or_create(cls, path: Path) -> HostKey:
        """The key in `path`, made (mode 0600) when the file does not exist.

        A key others may read, or one that does not parse, is refused rather
        than replaced: the operator decides (delete it and a new key is made,
        which the provisioner learns from the next heartbeat)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return cls._load(path)
        key = X25519PrivateKey.generate()
        with os.fdopen(fd, "w") as f:
            f.write(_b64(key.private_bytes_raw()) + "\n")
        return cls(key)

    @classmethod
    def _load(cls, path: Path) -> HostKey:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise HostKeyError(
                f"{path} may be read by other users (mode {stat.S_IMODE(mode):o}): "
                "chmod 600 it, or delete it to make a new key"
            )
        try:
            raw = _unb64(path.read_text().strip())
            if len(raw) != _KEY_BYTES:
                raise ValueError("wrong length")
            return cls(X25519PrivateKey.from_private_bytes(raw))
        except (binascii.Error, ValueError) as exc:
            raise HostKeyError(
                f"{path} holds no X25519 key: delete it to make a new one"
            ) from exc

    def open_spec(self, spec: ContainerSpec) -> ContainerSpec:
        """The spec with its sealed fields opened; a clear spec (from a
        provisioner older than sealing) as it is."""
        sealed = spec.sealed
        if sealed is None:
            return spec
        if sealed.key_id != self.key_id:
            raise SealedForAnotherKey(
                f"the spec of {spec.name} is sealed to host key {sealed.key_id}, "
                f"this host's key is {self.key_id}; the provisioner seals to the "
                "key of this host's latest heartbeat",
                sealed_to=sealed.key_id,
                host_key=self.key_id,
            )
        try:
            plain = _SUITE.decrypt(_unb64(sealed.box), self._private, info=_info(spec))
            opened = _Secrets.model_validate_json(plain)
        except (InvalidTag, binascii.Error, ValueError, ValidationError) as exc:
            # ValidationError is a ValueError; named for the reader.
            raise SpecUnreadable(
                f"the sealed spec of {spec.name} does not open with this host's key "
                "(tampered, or sealed for another container)"
            ) from exc
        return spec.model_copy(
            update={
                "files": {**spec.files, **opened.files},
                "env": {**spec.env, **opened.env},
                "sealed": None,
            }
        )
