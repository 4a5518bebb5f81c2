"""Where a user's files live on a host: `<data>/<user_id>/{config,workspace}`."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from uuid import UUID

from yourclaw_common.events import ContainerSpec, container_name

from yourclaw_host_agent.errors import InvalidRequest, InvalidSpec

_NAME = re.compile(
    r"^yourclaw-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$"
)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
# Top-level folders a spec may write into.
_WRITABLE_ROOTS = ("config", "workspace")


def user_id_of(name: str) -> UUID:
    """The user of a container name; anything but `yourclaw-<uuid>` is refused."""
    match = _NAME.match(name)
    if not match:
        raise InvalidRequest(f"not a YourClaw container name: {name[:80]!r}")
    return UUID(match.group(1))


@dataclass(frozen=True)
class UserPaths:
    """One user's folders on this host."""

    root: Path

    @property
    def config(self) -> Path:
        # OpenClaw's state dir: openclaw.json, sessions, credentials, caches.
        return self.root / "config"

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def run(self) -> Path:
        # The host-agent's own records (never mounted into a container).
        return self.root / "run"

    @property
    def home(self) -> Path:
        return self.root / "home"


@dataclass(frozen=True)
class DataLayout:
    """The host's data dir."""

    root: Path

    def user(self, user_id: UUID) -> UserPaths:
        return UserPaths(self.root / str(user_id))

    def for_name(self, name: str) -> UserPaths:
        return self.user(user_id_of(name))


def remove_tree(path: Path) -> None:
    """Delete a folder, or a link to one and what it points at (a user's folder
    is a link when their gateway was a warm spare); missing is fine."""
    if path.is_symlink():
        target = path.resolve()
        path.unlink()
        shutil.rmtree(target, ignore_errors=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


def validate_spec(spec: ContainerSpec) -> None:
    """Refuse a spec that names another container, escapes its folders or has bad env."""
    if spec.name != container_name(spec.user_id):
        raise InvalidSpec(
            f"name {spec.name[:80]!r} is not {container_name(spec.user_id)!r}"
        )
    for rel in (*spec.files, *spec.remove_files):
        path = PurePosixPath(rel)
        if (
            path.is_absolute()
            or ".." in path.parts
            or len(path.parts) < 2
            or path.parts[0] not in _WRITABLE_ROOTS
            or "\x00" in rel
        ):
            raise InvalidSpec(
                f"file path {rel[:120]!r} must be relative, under config/ or workspace/"
            )
    for key, value in spec.env.items():
        if not _ENV_NAME.match(key) or "\x00" in value:
            raise InvalidSpec(f"bad environment variable name {key[:60]!r}")


def _write_atomic(path: Path, content: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
        os.chmod(tmp, mode)
        # A rename, so a gateway watching its config never reads half a file.
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_files(
    paths: UserPaths, files: dict[str, str], remove: tuple[str, ...] = ()
) -> None:
    """Write a spec's files, config (it holds the gateway token) private, and
    delete the ones it removes."""
    for folder in (paths.root, paths.config, paths.run):
        folder.mkdir(parents=True, exist_ok=True)
        os.chmod(folder, 0o700)
    paths.workspace.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        target = paths.root / rel
        private = PurePosixPath(rel).parts[0] == "config"
        _write_atomic(target, content, 0o600 if private else 0o644)
    root = paths.root.resolve()
    for rel in remove:
        target = paths.root / rel
        # Only inside the user's folder: a folder on the way that the tenant
        # replaced with a link must not point the deletion elsewhere (a link
        # at the file itself is removed, not followed).
        if target.parent.resolve().is_relative_to(root):
            target.unlink(missing_ok=True)
