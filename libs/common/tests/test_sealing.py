"""Specs sealed to one host's key: only that host opens them, and only as sent."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError
from yourclaw_common.events import ContainerSpec, HostHeartbeat, container_name
from yourclaw_common.sealing import (
    HOST_KEY_FILE,
    HostKey,
    HostKeyError,
    SealedForAnotherKey,
    SpecUnreadable,
    seal_spec,
)

TOKEN = "gw-token-" + "T0k3n" * 8
PROXY = "ycp_" + "Pr0xy" * 8


def make_spec(**changes) -> ContainerSpec:
    user_id = uuid.uuid4()
    fields = {
        "user_id": user_id,
        "name": container_name(user_id),
        "port": 19100,
        "files": {
            "config/openclaw.json": f'{{"token": "{TOKEN}", "apiKey": "{PROXY}"}}',
            "workspace/CLAUDE.md": "# You are on WhatsApp\n",
        },
        "env": {"MARK": "m1"},
        "spec_hash": "h1",
        **changes,
    }
    return ContainerSpec(**fields)


class TestSealSpec:
    def test_only_the_hosts_key_opens_it(self):
        host = HostKey.generate()
        spec = make_spec()

        sealed = seal_spec(spec, host.public_key)

        wire = sealed.model_dump_json()
        assert TOKEN not in wire
        assert PROXY not in wire
        assert "WhatsApp" not in wire
        assert (sealed.files, sealed.env) == ({}, {})
        assert sealed.spec_hash == spec.spec_hash
        assert sealed.sealed is not None
        assert sealed.sealed.key_id == host.key_id
        # What the host gets off the bus opens to the spec the provisioner built.
        received = ContainerSpec.model_validate_json(wire)
        assert host.open_spec(received) == spec

    def test_each_seal_is_new_ciphertext(self):
        host = HostKey.generate()
        spec = make_spec()

        first, second = (seal_spec(spec, host.public_key) for _ in range(2))

        assert first.sealed != second.sealed
        assert host.open_spec(first) == host.open_spec(second) == spec

    def test_a_spec_sealed_to_another_key_is_refused_by_name(self):
        this_host, other_host = HostKey.generate(), HostKey.generate()
        sealed = seal_spec(make_spec(), other_host.public_key)

        with pytest.raises(SealedForAnotherKey) as caught:
            this_host.open_spec(sealed)

        assert caught.value.code == "SEALED_FOR_ANOTHER_KEY"
        assert other_host.key_id in caught.value.detail
        assert this_host.key_id in caught.value.detail

    def test_a_box_claiming_this_hosts_key_but_sealed_to_another_does_not_open(self):
        this_host, other_host = HostKey.generate(), HostKey.generate()
        sealed = seal_spec(make_spec(), other_host.public_key)
        assert sealed.sealed is not None
        forged = sealed.model_copy(
            update={
                "sealed": sealed.sealed.model_copy(update={"key_id": this_host.key_id})
            }
        )

        with pytest.raises(SpecUnreadable) as caught:
            this_host.open_spec(forged)

        assert caught.value.code == "SEALED_SPEC_UNREADABLE"

    @pytest.mark.parametrize("field", ["name", "spec_hash"])
    def test_a_box_moved_into_another_spec_does_not_open(self, field):
        host = HostKey.generate()
        sealed = seal_spec(make_spec(), host.public_key)
        other = make_spec()
        moved = sealed.model_copy(update={field: getattr(other, field) + "x"})

        with pytest.raises(SpecUnreadable):
            host.open_spec(moved)

    def test_the_error_names_no_secret(self):
        host = HostKey.generate()
        sealed = seal_spec(make_spec(), host.public_key)
        moved = sealed.model_copy(update={"spec_hash": "h2"})

        with pytest.raises(SpecUnreadable) as caught:
            host.open_spec(moved)

        assert TOKEN not in str(caught.value)
        assert PROXY not in str(caught.value)

    def test_a_clear_spec_passes_unchanged(self):
        # From a provisioner older than sealing, during a rolling deploy.
        spec = make_spec()

        assert HostKey.generate().open_spec(spec) == spec


class TestHostKey:
    def test_made_once_private_and_kept(self, tmp_path):
        path = tmp_path / "data" / HOST_KEY_FILE

        first = HostKey.load_or_create(path)
        again = HostKey.load_or_create(path)

        assert path.stat().st_mode & 0o777 == 0o600
        assert again.public_key == first.public_key
        assert first.public_key not in path.read_text()  # the file is the private key
        sealed = seal_spec(make_spec(), first.public_key)
        assert again.open_spec(sealed).files["config/openclaw.json"].count(TOKEN) == 1

    def test_a_lost_key_is_replaced_by_a_new_one(self, tmp_path):
        path = tmp_path / HOST_KEY_FILE
        old = HostKey.load_or_create(path)
        path.unlink()

        new = HostKey.load_or_create(path)

        assert new.public_key != old.public_key
        with pytest.raises(SealedForAnotherKey):
            new.open_spec(seal_spec(make_spec(), old.public_key))

    def test_a_key_others_may_read_is_refused(self, tmp_path):
        path = tmp_path / HOST_KEY_FILE
        HostKey.load_or_create(path)
        path.chmod(0o644)

        with pytest.raises(HostKeyError, match="chmod 600"):
            HostKey.load_or_create(path)

    def test_a_damaged_key_is_refused(self, tmp_path):
        path = tmp_path / HOST_KEY_FILE
        path.write_text("not a key\n")
        path.chmod(0o600)

        with pytest.raises(HostKeyError, match="delete it"):
            HostKey.load_or_create(path)


class TestHeartbeatKey:
    def test_a_heartbeat_carries_a_public_key_or_none(self):
        key = HostKey.generate()
        fields = {
            "host_id": "h1",
            "address": "127.0.0.1",
            "runtime": "docker",
            "capacity": 1,
            "used": 0,
        }

        assert HostHeartbeat(**fields, public_key=key.public_key).public_key
        assert HostHeartbeat(**fields).public_key is None
        with pytest.raises(ValidationError):
            HostHeartbeat(**fields, public_key="not-a-key")
