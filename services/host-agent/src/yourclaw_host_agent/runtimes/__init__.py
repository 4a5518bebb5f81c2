"""Container runtimes behind one interface: `process` (default) and `docker`."""

from yourclaw_host_agent.runtimes.base import ContainerRuntime, RuntimeKind

__all__ = ["ContainerRuntime", "RuntimeKind"]
