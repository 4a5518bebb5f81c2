"""Test support: the pytest plugin (`-p yourclaw_common.testing.plugin`) and helpers."""

from yourclaw_common.testing.factories import (
    assistant_with_proxy_credential,
    subscribed_user,
)
from yourclaw_common.testing.helpers import eventually, reset_streams

__all__ = [
    "assistant_with_proxy_credential",
    "eventually",
    "reset_streams",
    "subscribed_user",
]
