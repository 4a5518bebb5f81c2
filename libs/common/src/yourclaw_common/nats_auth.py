"""Who may do what on the bus: one NATS user per service and per host.

NATS 2 `authorization` users with passwords, not NKeys or JWT accounts: every
identity and its permissions are known when the config is written, one account
is all we need, and it needs no tool beyond `nats-server` (nsc-managed JWTs pay
off with many accounts or self-service operators, which we do not have).
Adding a host is a new user and a `nats-server --signal reload`.

- A **platform service** publishes only the events it owns, serves only its
  own requests and receives replies on its own inbox prefix `_INBOX.<user>.>`,
  so it cannot read another service's replies. Of the JetStream API it gets
  only what its code uses (`jetstream_api`): stream info; create and update
  of the streams it *owns* (those storing the events it publishes; the dead
  letters for services with consumers); and, for its own durables
  (`<service>-<purpose>`), create, info, fetch (`MSG.NEXT`) and acks. It can
  neither delete, purge nor read a message of any stream, nor make a consumer
  on a stream it does not consume: it cannot read another service's events.
- A **host-agent** (it runs next to tenants' containers, so it is trusted
  least) answers only `host.<its id>.*`, publishes only its own heartbeat
  `heartbeat.<its id>` and has no JetStream at all: it cannot read a stream.
- The **operator** user is for people and their tools (dead letters,
  `yourclaw-dev`, bootstrap checks): everything.

`render_authorization` writes the server's `authorization { ... }` block; with
`password_refs` the passwords are `$NATS_PASSWORD_<USER>` environment
references the server resolves at start, so the file itself holds no secret.
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from yourclaw_common.events.subjects import Subject
from yourclaw_common.events.topology import (
    STREAMS,
    ConsumerSpec,
    Stream,
    stream_for,
)

__all__ = [
    "OPERATOR",
    "PLATFORM_GRANTS",
    "Grant",
    "grant_for",
    "heartbeat_subject",
    "helm_users",
    "host_user",
    "inbox_prefix",
    "jetstream_api",
    "new_passwords",
    "owned_streams",
    "password_env",
    "permissions",
    "render_authorization",
    "users_for",
]

OPERATOR = "operator"
_HOST_PREFIX = "host-agent-"
# A host id becomes a subject token and a user name: no dots, spaces or wildcards.
_HOST_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class Grant:
    """What one NATS user may publish and subscribe (besides its own inbox)."""

    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    # May answer the requests it receives (their reply subjects), nothing else.
    respond: bool = False
    jetstream: bool = False


def _events(*subjects: Subject | str) -> tuple[str, ...]:
    return tuple(s.value if isinstance(s, Subject) else s for s in subjects)


# What each platform service does on the bus, from its code: the events it
# publishes (directly or through its outbox) and the requests it serves.
PLATFORM_GRANTS: Mapping[str, Grant] = {
    "gateway-api": Grant(
        publish=_events(
            "inbound.*",  # Twilio webhooks
            "billing.*",  # Stripe webhooks (one token: never the requests below)
            Subject.ASSISTANT_PROVISION_REQUESTED,
            Subject.ASSISTANT_DEPROVISION_REQUESTED,
            Subject.OUTBOUND_WHATSAPP,  # the assistants' notify relay
            Subject.BILLING_CHECKOUT_CREATE,  # requests to billing
            Subject.BILLING_PORTAL_CREATE,
        ),
        jetstream=True,
    ),
    "billing": Grant(
        publish=_events("subscription.*"),
        subscribe=_events(
            Subject.BILLING_CHECKOUT_CREATE, Subject.BILLING_PORTAL_CREATE
        ),
        respond=True,
        jetstream=True,
    ),
    "provisioner": Grant(
        publish=_events(
            Subject.ASSISTANT_READY,
            Subject.ASSISTANT_FAILED,
            Subject.ASSISTANT_RESTARTED,
            "host.*.*",
        ),
        subscribe=_events(
            f"{Subject.HOST_HEARTBEAT.value}.*",
            Subject.ASSISTANT_WAKE,  # requests from messaging
        ),
        respond=True,
        jetstream=True,
    ),
    "llm-proxy": Grant(
        publish=_events(Subject.USAGE_CAP_REACHED, Subject.USAGE_ALLOWANCE_WARNING),
        jetstream=True,
    ),
    "messaging": Grant(
        publish=_events(
            Subject.ASSISTANT_PROVISION_REQUESTED,  # `/model` in chat
            Subject.ASSISTANT_WAKE,  # requests to the provisioner
        ),
        jetstream=True,
    ),
}


def _check_host_id(host_id: str) -> str:
    if not _HOST_ID.match(host_id):
        raise ValueError(
            f"host id {host_id!r} must be 1-64 letters, digits, '-' or '_' "
            "(it names NATS subjects and a NATS user)"
        )
    return host_id


def host_user(host_id: str) -> str:
    """The NATS user of the host-agent of `host_id`."""
    return _HOST_PREFIX + _check_host_id(host_id)


def heartbeat_subject(host_id: str) -> str:
    """Where the host-agent of `host_id` publishes its heartbeat."""
    return f"{Subject.HOST_HEARTBEAT.value}.{_check_host_id(host_id)}"


def inbox_prefix(user: str) -> str:
    """The reply-subject prefix of `user`'s connections (`_INBOX.<user>`)."""
    return f"_INBOX.{user}"


def grant_for(user: str) -> Grant | None:
    """The grant of a platform service or host user; None for the operator."""
    if user == OPERATOR:
        return None
    if user.startswith(_HOST_PREFIX):
        host_id = user.removeprefix(_HOST_PREFIX)
        return Grant(
            publish=(heartbeat_subject(host_id),),
            subscribe=(f"host.{_check_host_id(host_id)}.*",),
            respond=True,
        )
    try:
        return PLATFORM_GRANTS[user]
    except KeyError:
        raise ValueError(f"no NATS grant for user {user!r}") from None


CONSUMERS_ENTRY_POINTS = "yourclaw.consumers"


def declared_consumers() -> list[ConsumerSpec]:
    """Every installed service's durables, as the service declares them: each
    names a class of ConsumerSpecs in the entry point group `yourclaw.consumers`
    (its pyproject.toml), so libs/common lists none and imports no service."""
    return [
        spec
        for entry in entry_points(group=CONSUMERS_ENTRY_POINTS)
        for spec in vars(entry.load()).values()
        if isinstance(spec, ConsumerSpec)
    ]


def _consumers_of(user: str) -> list[tuple[str, str]]:
    """(stream, durable) of `user`'s durables: named `<service>-<purpose>`."""
    return [
        (spec.stream, spec.durable)
        for spec in declared_consumers()
        if spec.durable.startswith(user + "-")
    ]


def owned_streams(user: str) -> frozenset[str] | None:
    """The streams `user` may create and update: those storing the events it
    publishes, and DEAD_LETTER for a service with consumers (their dead
    letters). None: all of them (the operator, or no NATS user)."""
    grant = grant_for(user) if user else None
    if grant is None:
        return None
    owned: set[str] = set()
    for subject in grant.publish:
        try:
            owned.add(stream_for(subject))
        except KeyError:  # core NATS only (host commands, requests)
            continue
    if _consumers_of(user):
        owned.add(Stream.DEAD_LETTER)
    return frozenset(owned)


def jetstream_api(user: str) -> tuple[str, ...]:
    """The JetStream API subjects `user` may publish to (requests and acks).

    Create is per stream name, never a wildcard: a stream of another name
    could capture subjects nobody stores (the host commands).
    """
    owned = owned_streams(user) or frozenset()
    names = [cfg.name for cfg in STREAMS if cfg.name in owned]
    subjects = [
        "$JS.API.INFO",  # readiness: JetStream answers
        "$JS.API.STREAM.INFO.*",  # config and counts, never a message
        *(f"$JS.API.STREAM.CREATE.{name}" for name in names),
        *(f"$JS.API.STREAM.UPDATE.{name}" for name in names),
    ]
    for stream, durable in _consumers_of(user):
        mine = f"{stream}.{durable}"
        subjects += [
            # nats-py names the filter subject after the durable when it has one.
            f"$JS.API.CONSUMER.CREATE.{mine}",
            f"$JS.API.CONSUMER.CREATE.{mine}.>",
            f"$JS.API.CONSUMER.INFO.{mine}",
            f"$JS.API.CONSUMER.MSG.NEXT.{mine}",
            f"$JS.ACK.{mine}.>",
        ]
    return tuple(subjects)


def users_for(hosts: Iterable[str]) -> list[str]:
    """Every user a deployment needs: the operator, the services, the hosts."""
    return [OPERATOR, *PLATFORM_GRANTS, *(host_user(h) for h in hosts)]


def new_passwords(users: Iterable[str]) -> dict[str, str]:
    """A fresh random password for each user."""
    return {user: secrets.token_urlsafe(32) for user in users}


def password_env(user: str) -> str:
    """The environment variable a rendered config reads `user`'s password from."""
    return "NATS_PASSWORD_" + re.sub(r"[^A-Z0-9]", "_", user.upper())


def _quoted(values: Iterable[str]) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def permissions(user: str, grant: Grant) -> dict[str, Any]:
    """The server's `permissions` of `user`, as data."""
    found: dict[str, Any] = {
        "publish": {
            "allow": [*grant.publish, *(jetstream_api(user) if grant.jetstream else ())]
        },
        "subscribe": {"allow": [*grant.subscribe, f"{inbox_prefix(user)}.>"]},
    }
    if grant.respond:
        found["allow_responses"] = True
    return found


def _permissions(user: str, grant: Grant) -> str:
    found = permissions(user, grant)
    lines = [
        f"publish: {{ allow: {_quoted(found['publish']['allow'])} }}",
        f"subscribe: {{ allow: {_quoted(found['subscribe']['allow'])} }}",
    ]
    if grant.respond:
        lines.append("allow_responses: true")
    return "{ " + ", ".join(lines) + " }"


def helm_users(users: Iterable[str]) -> list[dict[str, Any]]:
    """`config.merge.authorization.users` for the NATS Helm chart: passwords
    as `<< $NATS_PASSWORD_<USER> >>`, the chart's way to write an unquoted
    environment reference."""
    found: list[dict[str, Any]] = []
    for user in users:
        entry: dict[str, Any] = {
            "user": user,
            "password": f"<< ${password_env(user)} >>",
        }
        grant = grant_for(user)
        if grant is not None:
            entry["permissions"] = permissions(user, grant)
        found.append(entry)
    return found


def render_authorization(
    passwords: Mapping[str, str] | None = None,
    *,
    users: Iterable[str] | None = None,
    password_refs: bool = False,
) -> str:
    """The server's `authorization { users = [...] }` block.

    Either `passwords` (user → password, written into the file: keep it 0600)
    or `users` with `password_refs=True` (each password read from
    `$NATS_PASSWORD_<USER>` by the server at start).
    """
    names = list(users if users is not None else (passwords or {}))
    entries = []
    for user in names:
        if password_refs:
            password = "$" + password_env(user)
        else:
            assert passwords is not None
            password = json.dumps(passwords[user])
        grant = grant_for(user)
        permissions = (
            "" if grant is None else f", permissions: {_permissions(user, grant)}"
        )
        entries.append(
            f"    {{ user: {json.dumps(user)}, password: {password}{permissions} }}"
        )
    body = "\n".join(entries)
    return f"authorization {{\n  users = [\n{body}\n  ]\n}}\n"


def cli(argv: list[str] | None = None) -> None:
    """`python -m yourclaw_common.nats_auth --host h1 --host h2`: the config block
    for a deployment, passwords as environment references."""
    parser = argparse.ArgumentParser(
        prog="python -m yourclaw_common.nats_auth",
        description="Print the NATS authorization block: the operator, every "
        "service, and one user per host. Passwords are $NATS_PASSWORD_<USER> "
        "environment references the server resolves at start.",
    )
    parser.add_argument("--host", action="append", default=[], help="a host id")
    parser.add_argument(
        "--helm",
        action="store_true",
        help="print the users as JSON for the Helm chart's "
        "config.merge.authorization.users instead",
    )
    args = parser.parse_args(argv)
    try:
        users = users_for(args.host)
    except ValueError as exc:
        parser.error(str(exc))
    if args.helm:
        sys.stdout.write(json.dumps(helm_users(users), indent=2) + "\n")
    else:
        hosts = " ".join(f"--host {h}" for h in args.host)
        sys.stdout.write(
            f"# NATS users and permissions. Written by\n"
            f"#   python -m yourclaw_common.nats_auth {hosts}\n"
            "# Passwords are read from the server's environment at start.\n"
            + render_authorization(users=users, password_refs=True)
        )


if __name__ == "__main__":
    cli()
