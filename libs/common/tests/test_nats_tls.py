"""NATS over TLS: services verify the server against our CA, and nobody gets
in without TLS (a real nats-server with a certificate our CA signed)."""

from __future__ import annotations

import asyncio
import json
import ssl

import pytest
from cryptography import x509
from nats.errors import NoServersError
from pydantic import ValidationError
from yourclaw_common.embedded import EmbeddedNats
from yourclaw_common.nats import connect_as
from yourclaw_common.nats_auth import new_passwords, users_for
from yourclaw_common.nats_tls import write_server_tls
from yourclaw_common.settings import CommonSettings

_ONE_SHOT = {"max_reconnect_attempts": 0, "allow_reconnect": False}


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("nats-tls")
    files = write_server_tls(root / "certs", ["localhost", "127.0.0.1"])
    server = EmbeddedNats(
        root / "store", passwords=new_passwords(users_for([])), tls=files
    ).start()
    yield server, files
    server.stop()


def _settings(server: EmbeddedNats, ca_file: str, user: str = "messaging"):
    assert server.passwords is not None
    return CommonSettings(
        _env_file=None,
        nats_url=server.url,
        nats_user=user,
        nats_password=server.passwords[user],
        nats_tls_ca_file=ca_file,
    )


class TestTlsConnections:
    async def test_a_service_connects_over_tls_verifying_our_ca(self, tls_server):
        server, files = tls_server
        nc = await connect_as(
            _settings(server, str(files.ca_file)), name="tls-test", **_ONE_SHOT
        )
        try:
            # The JetStream API answers over the encrypted connection.
            await nc.jetstream().account_info()
            assert nc._transport._io_writer.get_extra_info("ssl_object") is not None
        finally:
            await nc.close()

    async def test_a_client_that_does_not_trust_our_ca_is_refused(
        self, tls_server, tmp_path
    ):
        server, _ = tls_server
        # A CA of its own: the server's certificate is not signed by it.
        other = write_server_tls(tmp_path / "other", ["localhost"])
        with pytest.raises((ssl.SSLCertVerificationError, NoServersError)):
            await connect_as(
                _settings(server, str(other.ca_file)),
                name="tls-test",
                connect_timeout=2,
                **_ONE_SHOT,
            )

    async def test_the_system_cas_do_not_vouch_for_it_either(self, tls_server):
        server, _ = tls_server
        with pytest.raises((ssl.SSLCertVerificationError, NoServersError)):
            await connect_as(
                _settings(server, ""), name="tls-test", connect_timeout=2, **_ONE_SHOT
            )

    async def test_plain_tcp_to_the_tls_server_is_refused(self, tls_server):
        server, _ = tls_server
        assert server.passwords is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        try:
            info = await asyncio.wait_for(reader.readline(), 5)
            assert b'"tls_required":true' in info
            connect = json.dumps(
                {"user": "operator", "pass": server.passwords["operator"]}
            )
            writer.write(f"CONNECT {connect}\r\nPING\r\n".encode())
            await writer.drain()
            # The server expects a TLS handshake: it never answers PONG and
            # closes the connection.
            rest = await asyncio.wait_for(reader.read(), 10)
            assert b"PONG" not in rest
        finally:
            writer.close()


class TestProductionRefusesPlainNats:
    def test_a_plain_url_off_this_machine_is_refused(self):
        with pytest.raises(ValidationError, match="must be tls://"):
            CommonSettings(
                _env_file=None,
                yourclaw_env="production",
                nats_url="nats://nats.nats.svc.cluster.local:4222",
            )

    def test_tls_is_accepted(self):
        settings = CommonSettings(
            _env_file=None,
            yourclaw_env="production",
            nats_url="tls://nats.nats.svc.cluster.local:4222",
        )
        assert settings.nats_url.startswith("tls://")

    def test_loopback_and_dev_may_stay_plain(self):
        CommonSettings(_env_file=None, nats_url="nats://127.0.0.1:4222")
        CommonSettings(_env_file=None, yourclaw_env="dev", nats_url="nats://nats:4222")

    def test_the_refusal_names_no_password(self):
        with pytest.raises(ValidationError) as refused:
            CommonSettings(_env_file=None, nats_url="nats://billing:hunter2@nats:4222")
        assert "hunter2" not in str(refused.value)


def test_the_server_certificate_names_what_clients_dial(tmp_path):
    files = write_server_tls(tmp_path, ["nats", "127.0.0.1"])
    ca = x509.load_pem_x509_certificate(files.ca_file.read_bytes())
    cert = x509.load_pem_x509_certificate(files.cert_file.read_bytes())
    cert.verify_directly_issued_by(ca)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert names.value.get_values_for_type(x509.DNSName) == ["nats"]
    assert [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)] == [
        "127.0.0.1"
    ]
    assert files.key_file.stat().st_mode & 0o777 == 0o600
