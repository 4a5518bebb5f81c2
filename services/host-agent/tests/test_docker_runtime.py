"""The docker runtime against a stand-in Docker Engine on a unix socket.

The stand-in speaks the slice of the Engine API the runtime uses, keeps
containers in memory and records every create, so the tests can assert the
exact create payload: every hardening flag, and no socket mount.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import struct
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from yourclaw_common.events import ContainerSpec, HostVerb, container_name
from yourclaw_host_agent.errors import InvalidSpec, RuntimeFailure
from yourclaw_host_agent.layout import DataLayout
from yourclaw_host_agent.runtimes.docker import DockerRuntime
from yourclaw_host_agent.runtimes.docker_api import create_payload

from .conftest import make_spec, spec_payload


@dataclass
class Engine:
    """What the stand-in Engine holds and saw."""

    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    images: set[str] = field(default_factory=set)
    creates: list[dict[str, Any]] = field(default_factory=list)
    pulls: list[str] = field(default_factory=list)
    # Host ports something else listens on: a start publishing one fails.
    taken_ports: set[str] = field(default_factory=set)
    # Pauses that fail as runc's does when the kernel cannot freeze every
    # task in time.
    freeze_failures: int = 0


def _not_found(what: str) -> JSONResponse:
    return JSONResponse({"message": f"No such {what}"}, status_code=404)


def engine_app(engine: Engine) -> Starlette:
    async def ping(request: Request) -> Response:
        return Response("OK")

    async def create(request: Request) -> Response:
        name = request.query_params["name"]
        body = await request.json()
        engine.creates.append(body)
        if body["Image"] not in engine.images:
            return _not_found(f"image: {body['Image']}")
        if name in engine.containers:
            return JSONResponse({"message": "Conflict"}, status_code=409)
        if body["HostConfig"]["NetworkMode"] not in engine.networks:
            return _not_found("network")
        engine.containers[name] = {
            "Id": uuid.uuid4().hex,
            "Name": name,
            "Config": body,
            "Status": "created",
            "ExitCode": 0,
        }
        return JSONResponse(
            {"Id": engine.containers[name]["Id"], "Warnings": []}, status_code=201
        )

    def _find(request: Request) -> dict[str, Any] | None:
        return engine.containers.get(request.path_params["name"])

    async def start(request: Request) -> Response:
        c = _find(request)
        if c is None:
            return _not_found("container")
        if c["Status"] == "running":
            return Response(status_code=304)
        bindings = c["Config"]["HostConfig"]["PortBindings"].values()
        for binding in (b for per_port in bindings for b in per_port):
            if binding["HostPort"] in engine.taken_ports:
                # The Engine's own words (a 500) when its port proxy cannot bind.
                return JSONResponse(
                    {
                        "message": "driver failed programming external "
                        f"connectivity on endpoint {c['Name']}: Error starting "
                        f"userland proxy: listen tcp4 {binding['HostIp']}:"
                        f"{binding['HostPort']}: bind: address already in use"
                    },
                    status_code=500,
                )
        c["Status"] = "running"
        return Response(status_code=204)

    async def stop(request: Request) -> Response:
        c = _find(request)
        if c is None:
            return _not_found("container")
        if c["Status"] != "running":
            return Response(status_code=304)
        c["Status"] = "exited"
        c["ExitCode"] = 0
        return Response(status_code=204)

    async def restart(request: Request) -> Response:
        c = _find(request)
        if c is None:
            return _not_found("container")
        c["Status"] = "running"
        return Response(status_code=204)

    def _switch(request: Request, was: str, becomes: str) -> Response:
        c = _find(request)
        if c is None:
            return _not_found("container")
        if c["Status"] != was:
            return JSONResponse(
                {"message": f"Container {c['Id']} is not {was}"}, status_code=409
            )
        c["Status"] = becomes
        return Response(status_code=204)

    async def pause(request: Request) -> Response:
        c = _find(request)
        if c is not None and c["Status"] == "running" and engine.freeze_failures:
            engine.freeze_failures -= 1
            return JSONResponse(
                {
                    "message": f"Cannot pause container {c['Id']}: OCI runtime "
                    "pause failed: unable to freeze: unknown"
                },
                status_code=500,
            )
        return _switch(request, "running", "paused")

    async def unpause(request: Request) -> Response:
        return _switch(request, "paused", "running")

    async def delete(request: Request) -> Response:
        if engine.containers.pop(request.path_params["name"], None) is None:
            return _not_found("container")
        return Response(status_code=204)

    async def inspect(request: Request) -> Response:
        c = _find(request)
        if c is None:
            return _not_found("container")
        return JSONResponse(
            {
                "Id": c["Id"],
                "Name": "/" + c["Name"],
                "State": {
                    "Status": c["Status"],
                    "ExitCode": c["ExitCode"],
                    "Health": {"Status": "healthy"}
                    if c["Status"] == "running"
                    else None,
                },
                "Config": {"Labels": c["Config"]["Labels"]},
            }
        )

    async def list_containers(request: Request) -> Response:
        filters = json.loads(request.query_params.get("filters", "{}"))
        wanted = [f.split("=", 1) for f in filters.get("label", [])]
        out = []
        for c in engine.containers.values():
            labels = c["Config"]["Labels"]
            if all(labels.get(k) == v for k, v in wanted):
                status = (
                    "Up 3 seconds (healthy)"
                    if c["Status"] == "running"
                    else f"Exited ({c['ExitCode']}) 1 second ago"
                )
                out.append(
                    {
                        "Names": ["/" + c["Name"]],
                        "State": c["Status"],
                        "Status": status,
                        "Labels": labels,
                    }
                )
        return JSONResponse(out)

    async def logs(request: Request) -> Response:
        if _find(request) is None:
            return _not_found("container")
        frames = b""
        for stream, text in (
            (1, b"[gateway] starting\n"),
            (2, b"warn: x\n"),
            (1, b"[gateway] ready\n"),
        ):
            frames += struct.pack(">BxxxI", stream, len(text)) + text
        return Response(frames, media_type="application/vnd.docker.multiplexed-stream")

    async def network_get(request: Request) -> Response:
        net = engine.networks.get(request.path_params["name"])
        return JSONResponse(net) if net else _not_found("network")

    async def network_create(request: Request) -> Response:
        body = await request.json()
        engine.networks[body["Name"]] = body
        return JSONResponse({"Id": uuid.uuid4().hex}, status_code=201)

    async def network_delete(request: Request) -> Response:
        if engine.networks.pop(request.path_params["name"], None) is None:
            return _not_found("network")
        return Response(status_code=204)

    async def pull(request: Request) -> Response:
        image = request.query_params["fromImage"]
        tag = request.query_params.get("tag")
        ref = f"{image}:{tag}" if tag else image
        engine.pulls.append(ref)
        engine.images.add(ref)
        return Response(
            b'{"status":"Pulling"}\n{"status":"Downloaded"}\n',
            media_type="application/json",
        )

    return Starlette(
        routes=[
            Route("/_ping", ping),
            Route("/containers/create", create, methods=["POST"]),
            Route("/containers/json", list_containers),
            Route("/containers/{name}/start", start, methods=["POST"]),
            Route("/containers/{name}/stop", stop, methods=["POST"]),
            Route("/containers/{name}/restart", restart, methods=["POST"]),
            Route("/containers/{name}/pause", pause, methods=["POST"]),
            Route("/containers/{name}/unpause", unpause, methods=["POST"]),
            Route("/containers/{name}/json", inspect),
            Route("/containers/{name}/logs", logs),
            Route("/containers/{name}", delete, methods=["DELETE"]),
            Route("/networks/create", network_create, methods=["POST"]),
            Route("/networks/{name}", network_get),
            Route("/networks/{name}", network_delete, methods=["DELETE"]),
            Route("/images/create", pull, methods=["POST"]),
        ]
    )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        yield


@pytest_asyncio.fixture(loop_scope="session")
async def engine(tmp_path_factory) -> AsyncIterator[tuple[Engine, str]]:
    """A stand-in Docker Engine serving on a unix socket in a temp dir."""
    state = Engine(images={"yourclaw-openclaw:latest"})
    # Short: unix socket paths are limited to ~108 bytes.
    sock = str(tmp_path_factory.mktemp("dkr") / "docker.sock")
    server = _Server(
        uvicorn.Config(
            engine_app(state),
            uds=sock,
            log_config=None,
            access_log=False,
            lifespan="off",
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done()
        await asyncio.sleep(0.01)
    yield state, sock
    server.should_exit = True
    await task


@pytest_asyncio.fixture(loop_scope="session")
async def docker(engine) -> AsyncIterator[DockerRuntime]:
    state, sock = engine
    state.containers.clear()
    state.networks.clear()
    state.creates.clear()
    runtime = DockerRuntime(socket_path=sock, publish_ip="127.0.0.1", chown_to=None)
    yield runtime
    await runtime.close()


@pytest_asyncio.fixture(loop_scope="session")
async def agent(docker, start_agent):
    """A host-agent on the docker runtime, talking to the stand-in Engine."""
    return await start_agent(docker, host_runtime="docker")


def _spec(**kw) -> ContainerSpec:
    base = make_spec(**kw)
    return base.model_copy(update={"memory_mb": 1536, "cpus": 1.5, "pids_limit": 256})


class TestCreatePayload:
    async def test_hardening_profile(self, agent, engine, data_dir):
        state, _ = engine
        spec = _spec(env={"OPENAI_API_KEY": "sk-test"})

        reply = await agent.request(HostVerb.CREATE, spec_payload(spec))

        assert reply.ok, reply
        assert reply.container.state == "running"
        [body] = state.creates
        host = body["HostConfig"]
        assert host["CapDrop"] == ["ALL"]
        assert host["CapAdd"] == []
        assert host["SecurityOpt"] == ["no-new-privileges:true"]
        assert host["Privileged"] is False
        assert host["PidsLimit"] == 256
        assert host["Memory"] == 1536 * 1024 * 1024
        assert host["MemorySwap"] == host["Memory"]
        assert host["NanoCpus"] == 1_500_000_000
        assert host["ReadonlyRootfs"] is True
        assert "noexec" in host["Tmpfs"]["/tmp"]
        assert "nosuid" in host["Tmpfs"]["/tmp"]
        assert body["User"] == "1000:1000"
        assert host["NetworkMode"] == "yourclaw-tenants"
        assert host["PortBindings"] == {
            "18789/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(spec.port)}]
        }
        assert host["RestartPolicy"] == {"Name": "unless-stopped"}
        # tini is the image's entrypoint; Docker's own init would be a second.
        assert host["Init"] is False
        assert host["ExtraHosts"] == ["host.docker.internal:host-gateway"]
        assert "NetworkMode" in host
        assert host["NetworkMode"] != "host"
        assert "PidMode" not in host
        assert "IpcMode" not in host
        assert "Devices" not in host
        # Only the user's config and workspace are mounted: never a socket.
        user_dir = data_dir.resolve() / str(spec.user_id)
        assert [(m["Type"], m["Source"], m["Target"]) for m in host["Mounts"]] == [
            ("bind", str(user_dir / "config"), "/home/node/.openclaw"),
            ("bind", str(user_dir / "workspace"), "/home/node/.openclaw/workspace"),
        ]
        assert "Binds" not in host
        assert "docker.sock" not in json.dumps(body)
        env = dict(item.split("=", 1) for item in body["Env"])
        assert env["OPENAI_API_KEY"] == "sk-test"
        assert env["OPENCLAW_CONFIG_PATH"] == "/home/node/.openclaw/openclaw.json"
        assert body["Labels"]["yourclaw.spec_hash"] == "h1"
        assert body["Cmd"][-4:] == ["--bind", "lan", "--port", "18789"]
        # One shared tenant bridge, cells cut off from each other on it.
        net = state.networks["yourclaw-tenants"]
        assert net["Driver"] == "bridge"
        assert net["Options"]["com.docker.network.bridge.enable_icc"] == "false"
        assert net["Options"]["com.docker.network.bridge.name"] == "yc-tenants"

    async def test_publish_ip_is_configurable(self, engine, data_dir):
        state, sock = engine
        runtime = DockerRuntime(socket_path=sock, publish_ip="10.0.0.5", chown_to=None)
        spec = _spec()
        try:
            await runtime.run(spec, DataLayout(data_dir).user(spec.user_id))
        finally:
            await runtime.remove(spec.name)
            await runtime.close()
        assert (
            state.creates[-1]["HostConfig"]["PortBindings"]["18789/tcp"][0]["HostIp"]
            == "10.0.0.5"
        )
        assert runtime.probe_host == "10.0.0.5"

    def test_a_socket_mount_is_refused(self):
        with pytest.raises(InvalidSpec):
            create_payload(_spec(), _SocketPaths(), publish_ip="127.0.0.1")


class _SocketPaths:
    """UserPaths whose config would be the Engine's socket folder."""

    root = Path("/var")
    config = Path("/var/run")
    workspace = Path("/var/run/docker.sock")


class TestLifecycle:
    async def test_create_is_idempotent_and_replace_recreates(self, agent, engine):
        state, _ = engine
        spec = _spec()

        assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok
        again = await agent.request(HostVerb.CREATE, spec_payload(spec))
        replaced = await agent.request(
            HostVerb.CREATE, spec_payload(spec.model_copy(update={"spec_hash": "h2"}))
        )

        assert again.ok
        assert replaced.ok
        assert len(state.creates) == 2
        assert replaced.container.spec_hash == "h2"
        assert list(state.containers) == [spec.name]

    async def test_stop_start_restart_logs_list_remove(self, agent, engine):
        state, _ = engine
        spec = _spec()
        assert (await agent.request(HostVerb.CREATE, spec_payload(spec))).ok

        stopped = await agent.request(HostVerb.STOP, {"name": spec.name})
        listed = await agent.request(HostVerb.LIST, {})
        started = await agent.request(HostVerb.START, {"name": spec.name})
        restarted = await agent.request(HostVerb.RESTART, {"name": spec.name})
        logs = await agent.request(HostVerb.LOGS, {"name": spec.name, "tail": 10})
        removed = await agent.request(HostVerb.REMOVE, {"name": spec.name})
        removed_again = await agent.request(HostVerb.REMOVE, {"name": spec.name})
        inspect = await agent.request(HostVerb.INSPECT, {"name": spec.name})

        assert stopped.container.state == "stopped"
        assert [(c.name, c.state, c.port) for c in listed.containers] == [
            (spec.name, "stopped", spec.port)
        ]
        assert started.container.state == "running"
        assert restarted.container.state == "running"
        assert logs.logs == "[gateway] starting\nwarn: x\n[gateway] ready\n"
        assert removed.ok
        assert removed_again.ok
        assert inspect.container.state == "missing"
        assert state.containers == {}
        # The shared tenant network stays for the other tenants.
        assert "yourclaw-tenants" in state.networks

    async def test_a_freeze_the_kernel_could_not_finish_is_tried_again(
        self, docker, engine, data_dir
    ):
        state, _ = engine
        spec = _spec()
        await docker.run(spec, DataLayout(data_dir).user(spec.user_id))

        # runc gives up when a task stays in uninterruptible sleep (a busy
        # disk) and thaws the container: once is a hiccup, not a failure.
        state.freeze_failures = 1
        frozen = await docker.freeze(spec.name)
        thawed = await docker.unfreeze(spec.name)
        # Every try failing is an error, and the gateway is left running.
        state.freeze_failures = 10
        with pytest.raises(RuntimeFailure, match="unable to freeze"):
            await docker.freeze(spec.name)

        assert frozen.state == "paused"
        assert thawed.state == "running"
        assert state.freeze_failures == 7
        assert (await docker.inspect(spec.name)).state == "running"
        state.freeze_failures = 0

    async def test_an_agent_sees_only_its_own_data_dirs_containers(
        self, engine, data_dir, tmp_path
    ):
        _, sock = engine
        layout = DataLayout(data_dir)
        mine = DockerRuntime(socket_path=sock, chown_to=None, data_dir=str(data_dir))
        other = DockerRuntime(
            socket_path=sock, chown_to=None, data_dir=str(tmp_path / "other-host")
        )
        try:
            spec = _spec()
            await mine.run(spec, layout.user(spec.user_id))

            # Two agents on one engine (two checkouts, a test beside make up):
            # neither adopts, reports or removes the other's tenants.
            assert [c.name for c in await mine.list()] == [spec.name]
            assert await other.list() == []
        finally:
            await mine.close()
            await other.close()

    async def test_missing_image_is_a_readable_error(self, docker, engine, data_dir):
        state, _ = engine
        spec = _spec().model_copy(update={"image": "yourclaw-openclaw:missing"})

        with pytest.raises(RuntimeFailure, match=r"not on this host.*make images"):
            await docker.run(spec, DataLayout(data_dir).user(spec.user_id))

        # No registry is asked unless the operator allows pulls.
        assert state.pulls == []

    async def test_a_port_someone_else_holds_is_port_in_use(
        self, docker, engine, data_dir, start_agent
    ):
        state, _ = engine
        spec = _spec()
        state.taken_ports.add(str(spec.port))
        agent = await start_agent(docker, host_runtime="docker")
        try:
            reply = await agent.request(HostVerb.CREATE, spec_payload(spec))
        finally:
            state.taken_ports.clear()

        # The provisioner moves the assistant to the next port on this code.
        assert (reply.ok, reply.code) == (False, "PORT_IN_USE")

    async def test_missing_image_is_pulled_when_allowed(self, engine, data_dir):
        state, sock = engine
        runtime = DockerRuntime(socket_path=sock, chown_to=None, pull_missing=True)
        spec = _spec().model_copy(
            update={"image": "registry.example/openclaw:2026.9.6"}
        )

        info = await runtime.run(spec, DataLayout(data_dir).user(spec.user_id))

        assert info.state == "running"
        assert state.pulls == ["registry.example/openclaw:2026.9.6"]
        await runtime.remove(spec.name)
        await runtime.close()

    async def test_engine_down_is_a_clear_error(self, tmp_path, start_agent):
        runtime = DockerRuntime(
            socket_path=str(tmp_path / "nothing.sock"), chown_to=None
        )
        agent = await start_agent(runtime, host_runtime="docker")

        reply = await agent.request(
            HostVerb.INSPECT, {"name": container_name(uuid.uuid4())}
        )

        assert (reply.ok, reply.code) == (False, "RUNTIME_UNAVAILABLE")
        assert not await runtime.ping()
        await runtime.close()
