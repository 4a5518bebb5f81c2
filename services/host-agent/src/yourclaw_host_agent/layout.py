"""Where a user's files live on a host: `<data>/<user_id>/{config,workspace}`."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
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


def remove_tree(path: Path, *, data_root: Path | None = None) -> None:
    """Delete a folder, or a link to one and what it points at (a user's folder
    is a link when their gateway was a warm spare); missing is fine.

    A link is followed only into the host's data dir: one a tenant planted
    (`config -> /etc`) is removed, never what it points at.
    """
    if path.is_symlink():
        target = path.resolve()
        path.unlink()
        if data_root is not None and target.is_relative_to(data_root.resolve()):
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


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_dir(
    parent_fd: int,
    name: str,
    *,
    mode: int,
    create: bool,
    owner: tuple[int, int] | None = None,
) -> int:
    """Open (or make) one folder below `parent_fd` without following a link.

    A tenant can write its own config and workspace, so it can plant a link
    where we later write (`workspace/notes -> /etc`). Walking with O_NOFOLLOW
    from an already opened folder refuses such a link instead of writing
    through it.
    """
    if create:
        try:
            os.mkdir(name, mode, dir_fd=parent_fd)
            if owner is not None:
                os.chown(name, *owner, dir_fd=parent_fd, follow_symlinks=False)
        except FileExistsError:
            pass
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent_fd)
    except OSError as exc:
        raise InvalidSpec(
            f"refusing to write through {name!r}: not a plain folder ({exc.strerror})"
        ) from None


def _write_atomic(
    root_fd: int,
    rel: PurePosixPath,
    content: str,
    mode: int,
    owner: tuple[int, int] | None,
) -> None:
    fds = [root_fd]
    try:
        for part in rel.parts[:-1]:
            fds.append(_open_dir(fds[-1], part, mode=0o755, create=True, owner=owner))
        parent = fds[-1]
        tmp = f".{rel.name}.{secrets.token_hex(6)}"
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            mode,
            dir_fd=parent,
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(content)
                os.fchmod(handle.fileno(), mode)
                if owner is not None:
                    os.fchown(handle.fileno(), *owner)
            # A rename, so a gateway watching its config never reads half a
            # file; it replaces a planted link itself, never what it points at.
            os.replace(tmp, rel.name, src_dir_fd=parent, dst_dir_fd=parent)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=parent)
            raise
    finally:
        for fd in fds[1:]:
            os.close(fd)


def _user_root_fd(paths: UserPaths, data_root: Path | None) -> int:
    """The user's folder, opened; it may be a link (a warm spare's folder),
    but only to somewhere inside the host's data dir."""
    paths.root.mkdir(parents=True, exist_ok=True)
    if data_root is not None:
        real = paths.root.resolve()
        if not real.is_relative_to(data_root.resolve()):
            raise InvalidSpec(f"{paths.root} leads outside the host's data dir")
    return os.open(paths.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)


def write_files(
    paths: UserPaths,
    files: dict[str, str],
    remove: tuple[str, ...] = (),
    *,
    data_root: Path | None = None,
    owner: tuple[int, int] | None = None,
) -> None:
    """Write a spec's files (config, which holds the gateway token, stays
    private) and delete the ones it removes; with `owner` (uid, gid), what is
    written belongs to the gateway's user from the start (a running gateway
    reloads a config the moment it lands, so it must be able to read it).

    Nothing is written or deleted outside the user's folder, and no link the
    tenant planted in its config or workspace is followed (a link at a removed
    file is itself removed).
    """
    root_fd = _user_root_fd(paths, data_root)
    try:
        os.fchmod(root_fd, 0o700)
        for name, mode in (("config", 0o700), ("run", 0o700), ("workspace", 0o755)):
            # run/ is the agent's own, never the gateway's.
            mine = owner if name != "run" else None
            fd = _open_dir(root_fd, name, mode=mode, create=True, owner=mine)
            try:
                if mode == 0o700:
                    os.fchmod(fd, mode)
            finally:
                os.close(fd)
        for rel, content in files.items():
            path = PurePosixPath(rel)
            private = path.parts[0] == "config"
            _write_atomic(root_fd, path, content, 0o600 if private else 0o644, owner)
        for rel in remove:
            _remove(root_fd, PurePosixPath(rel))
    finally:
        os.close(root_fd)


def _remove(root_fd: int, rel: PurePosixPath) -> None:
    fds = [root_fd]
    try:
        for part in rel.parts[:-1]:
            try:
                fds.append(os.open(part, _DIR_FLAGS, dir_fd=fds[-1]))
            except OSError:
                return  # gone, or a planted link: nothing of ours to delete
        with contextlib.suppress(FileNotFoundError):
            os.unlink(rel.name, dir_fd=fds[-1])
    finally:
        for fd in fds[1:]:
            os.close(fd)
