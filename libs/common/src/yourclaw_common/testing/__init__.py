"""Test support: the pytest plugin (`-p yourclaw_common.testing.plugin`) and helpers."""

from yourclaw_common.testing.factories import subscribed_user
from yourclaw_common.testing.helpers import eventually, reset_streams

__all__ = ["eventually", "reset_streams", "subscribed_user"]
