"""What the `docker` runtime sends the Docker Engine API and reads back: the
body that creates a tenant container (OpenClaw's multi-tenant "fleet" profile)
and the message of an answer that refuses."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx
from yourclaw_common.events import GATEWAY_CONFIG_PORT, ContainerSpec

from yourclaw_host_agent.errors import InvalidSpec
from yourclaw_host_agent.layout import UserPaths

__all__ = [
    "CONTAINER_PORT",
    "MANAGED_LABEL",
    "MIB",
    "PROXY_HOSTNAME",
    "TENANT_BRIDGE",
    "TENANT_NETWORK",
    "create_payload",
    "engine_message",
]

CONTAINER_PORT = GATEWAY_CONFIG_PORT
MANAGED_LABEL = "yourclaw.managed"
MIB = 1024 * 1024
_HOME = "/home/node"
_STATE = f"{_HOME}/.openclaw"
_HOSTNAME = "assistant"
_USER = "1000:1000"
_TMPFS_TMP = "rw,noexec,nosuid,nodev,size=256m"
# Folders that hold (or are) the Engine's socket: never a tenant's mount source.
_SOCKET_DIRS = ("", "/var/run", "/run", "/run/docker", "/var/run/docker")
TENANT_NETWORK = "yourclaw-tenants"
# The Linux interface of that network, which the firewall rules name.
TENANT_BRIDGE = "yc-tenants"
# The name tenants reach the host by (the LLM proxy listens there): Docker maps
# it to the host's bridge address (`host-gateway`).
PROXY_HOSTNAME = "host.docker.internal"


def _refuse_socket_mounts(mounts: list[dict[str, Any]]) -> None:
    for mount in mounts:
        source = str(mount.get("Source", ""))
        target = str(mount.get("Target", ""))
        if (
            source.rstrip("/") in _SOCKET_DIRS
            or any(p.endswith(".sock") for p in (source, target))
            or "docker.sock" in source
        ):
            raise InvalidSpec("refusing to mount a runtime socket into a tenant")


def create_payload(
    spec: ContainerSpec,
    paths: UserPaths,
    *,
    publish_ip: str,
    network: str = TENANT_NETWORK,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The body of `POST /containers/create` for one tenant (or, with the
    pool's `labels`, for a warm spare: everything else is the same)."""
    env = dict(spec.env)
    # Fleet's container paths: these win over anything in the spec.
    env.update(
        {
            "HOME": _HOME,
            "OPENCLAW_HOME": _HOME,
            "OPENCLAW_STATE_DIR": _STATE,
            "OPENCLAW_CONFIG_PATH": f"{_STATE}/openclaw.json",
            "OPENCLAW_WORKSPACE_DIR": f"{_STATE}/workspace",
            "XDG_CACHE_HOME": f"{_STATE}/cache",
            "TMPDIR": "/tmp",  # noqa: S108 - the container's own tmpfs
            "OPENCLAW_NO_RESPAWN": "1",
            "OPENCLAW_DISABLE_BONJOUR": "1",
        }
    )
    mounts: list[dict[str, Any]] = [
        {"Type": "bind", "Source": str(paths.config), "Target": _STATE},
        {
            "Type": "bind",
            "Source": str(paths.workspace),
            "Target": f"{_STATE}/workspace",
        },
    ]
    _refuse_socket_mounts(mounts)
    port_key = f"{CONTAINER_PORT}/tcp"
    return {
        "Image": spec.image,
        # Inside the container the gateway listens on the container network
        # (`lan`), so the loopback-only host mapping can reach it.
        "Cmd": [
            "node",
            "dist/index.js",
            "gateway",
            "--bind",
            "lan",
            "--port",
            str(CONTAINER_PORT),
        ],
        "User": _USER,
        # The same host name in every container of this user: OpenClaw's state
        # lease names its owner by host and pid, and reclaims a dead owner's
        # lease only on the same host. With Docker's default (the container
        # id) a gateway re-created after a kill would wait out the lease.
        "Hostname": _HOSTNAME,
        "Env": [f"{k}={v}" for k, v in sorted(env.items())],
        "WorkingDir": "/app",
        "ExposedPorts": {port_key: {}},
        "Labels": dict(labels)
        if labels is not None
        else {
            MANAGED_LABEL: "true",
            "yourclaw.user_id": str(spec.user_id),
            # The host data dir the user's files are in: `make clean` of one
            # checkout removes its own containers only.
            "yourclaw.data_dir": os.path.abspath(paths.root.parent),
            "yourclaw.spec_hash": spec.spec_hash,
            "yourclaw.port": str(spec.port),
        },
        "Healthcheck": {
            "Test": [
                "CMD",
                "node",
                "-e",
                f"fetch('http://127.0.0.1:{CONTAINER_PORT}/healthz')"
                ".then(r=>process.exit(r.ok?0:1)).catch(()=>process.exit(1))",
            ],
            "Interval": 5_000_000_000,
            "Timeout": 3_000_000_000,
            "Retries": 3,
            "StartPeriod": 60_000_000_000,
            "StartInterval": 500_000_000,
        },
        "HostConfig": {
            "CapDrop": ["ALL"],
            "CapAdd": [],
            "SecurityOpt": ["no-new-privileges:true"],
            "Privileged": False,
            "ReadonlyRootfs": True,
            "Tmpfs": {"/tmp": _TMPFS_TMP},  # noqa: S108 - the container's own tmpfs
            "PidsLimit": spec.pids_limit,
            "Memory": spec.memory_mb * MIB,
            # Same as Memory: no swap on top of the limit.
            "MemorySwap": spec.memory_mb * MIB,
            "NanoCpus": int(spec.cpus * 1e9),
            # The image's entrypoint is tini: it reaps the gateway's helpers.
            "Init": False,
            "RestartPolicy": {"Name": "unless-stopped"},
            "NetworkMode": network,
            "ExtraHosts": [f"{PROXY_HOSTNAME}:host-gateway"],
            "PortBindings": {
                port_key: [{"HostIp": publish_ip, "HostPort": str(spec.port)}]
            },
            "Mounts": mounts,
            "LogConfig": {
                "Type": "json-file",
                "Config": {"max-size": "10m", "max-file": "3"},
            },
        },
    }


def engine_message(resp: httpx.Response) -> str:
    """The Engine's words for a failed call (its `message`, else the body)."""
    try:
        return str(resp.json().get("message", ""))[:500]
    except ValueError:
        return resp.text[:500]
