"""Test support: the pytest plugin (`-p yourclaw_common.testing.plugin`) and helpers."""

from yourclaw_common.testing.factories import (
    assistant_with_proxy_credential,
    subscribed_user,
)
from yourclaw_common.testing.helpers import (
    eventually,
    reset_streams,
    returned_within,
    rolled_back,
)
from yourclaw_common.testing.outage import Cuttable, cuttable

__all__ = [
    "Cuttable",
    "assistant_with_proxy_credential",
    "cuttable",
    "eventually",
    "reset_streams",
    "returned_within",
    "rolled_back",
    "subscribed_user",
]
