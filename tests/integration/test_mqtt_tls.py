"""TLS and authentication against a real mosquitto with certificates made here by openssl."""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
from edge_testkit import Mosquitto
from mqtt_helpers import context, feed, wait_until

from edge.config.model import MqttConfig
from edge.errors import ConfigError
from edge.publish.mqtt import MqttSink

PASSWORD = "s3cret-Pa55"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
            "-keyout", f"{name}.key", "-out", f"{name}.crt", cwd=d)


def make_cert(d: Path, name: str, ca: str, san: str) -> None:
    (d / f"{name}.ext").write_text(f"subjectAltName={san}\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not shutil.which("openssl") or not shutil.which("mosquitto_passwd"):
        pytest.fail("openssl and mosquitto_passwd are needed - run tools/setup.sh", pytrace=False)
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    make_cert(d, "server", "ca", "DNS:localhost")  # not 127.0.0.1: connecting by IP fails the host check
    make_cert(d, "client", "ca", "DNS:edge-client")
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(d / "passwd"), "edge", PASSWORD], check=True,
                   capture_output=True)
    (d / "passwd").chmod(0o600)
    return d


@pytest.fixture
def tls_broker(pki: Path, tmp_path: Path) -> Iterator[Mosquitto]:
    extra = "\n".join([
        f"cafile {pki / 'ca.crt'}", f"certfile {pki / 'server.crt'}", f"keyfile {pki / 'server.key'}",
        "require_certificate true", f"password_file {pki / 'passwd'}", "allow_anonymous false",
    ])
    broker = Mosquitto(tmp_path, extra=extra).start()
    yield broker
    broker.stop(kill=True)


def tls_config(pki: Path, port: int, host: str = "localhost", ca: str = "ca.crt", **kw: Any) -> MqttConfig:
    tls = {"enabled": True, "ca_file": pki / ca, "cert_file": pki / "client.crt", "key_file": pki / "client.key",
           **kw.pop("tls", {})}
    fields: Dict[str, Any] = {"host": host, "port": port, "username": "edge", "password": {"env": "EDGE_TEST_PW"},
                              "reconnect_min_s": 0.1, "auth_retry_s": 60, "connect_timeout_s": 5}
    fields.update(kw)
    return MqttConfig(tls=tls, **fields)


@pytest.mark.parametrize("source", ["env", "file", "credential"])
def test_mutual_tls_with_a_password_from_each_secret_source(source: str, pki: Path, tls_broker: Mosquitto,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "pw").write_text(PASSWORD + "\n")
    monkeypatch.setenv("EDGE_TEST_PW", PASSWORD)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    ref = {"env": {"env": "EDGE_TEST_PW"}, "file": {"file": tmp_path / "pw"}, "credential": {"credential": "pw"}}
    ctx = context()
    caplog.set_level(logging.DEBUG)
    sink = MqttSink(tls_config(pki, tls_broker.port, password=ref[source]), "dev", tmp_path / "state",
                    session=ctx.session)
    sink.start()
    try:
        assert wait_until(lambda: sink.stats()["connected"], timeout=15)
        feed(sink, ctx, "door", 20)
        assert wait_until(lambda: sink.stats()["acked"] == 20)
    finally:
        sink.close()
    assert PASSWORD not in caplog.text


def test_a_broker_certificate_from_another_ca_is_one_clear_line_and_a_slow_retry(
        pki: Path, tls_broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("EDGE_TEST_PW", PASSWORD)
    ctx = context()
    with caplog.at_level(logging.INFO):
        sink = MqttSink(tls_config(pki, tls_broker.port, ca="other-ca.crt"), "dev", tmp_path, session=ctx.session)
        sink.start()
        try:
            feed(sink, ctx, "door", 10)
            assert wait_until(lambda: "do not trust" in caplog.text)
            assert wait_until(lambda: sink.stats()["outbox_depth"] == 10)
            time.sleep(1.5)  # a fast retry loop would log and connect many times by now
            assert not sink.stats()["connected"]
            sink.poll()
        finally:
            sink.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines
    assert "certificate we do not trust" in lines[0] and "mqtt.tls.ca_file" in lines[0]
    assert "\n" not in lines[0] and "Traceback" not in caplog.text


def test_a_wrong_password_is_one_clear_line_and_a_slow_retry(
        pki: Path, tls_broker: Mosquitto, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("EDGE_TEST_PW", "wrong-password")
    with caplog.at_level(logging.DEBUG):
        sink = MqttSink(tls_config(pki, tls_broker.port), "dev", tmp_path)
        sink.start()
        try:
            assert wait_until(lambda: "refused the connection" in caplog.text)
            time.sleep(1.5)
            assert not sink.stats()["connected"]
        finally:
            sink.close()
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(lines) == 1, lines
    assert "check mqtt.username and mqtt.password" in lines[0] or "Not authorized" in lines[0], lines
    assert "wrong-password" not in caplog.text
    log = (tls_broker.workdir / "mosquitto.log").read_text()
    assert log.count("New connection from") == 1  # the slow retry: no second attempt within 1.5 s


def test_host_name_check_and_its_override(pki: Path, tls_broker: Mosquitto, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("EDGE_TEST_PW", PASSWORD)
    with caplog.at_level(logging.WARNING):
        sink = MqttSink(tls_config(pki, tls_broker.port, host="127.0.0.1"), "dev", tmp_path / "a")
        sink.start()
        try:
            assert wait_until(lambda: "do not trust" in caplog.text)
            assert "mismatch" in caplog.text
            assert not sink.stats()["connected"]
        finally:
            sink.close()
        caplog.clear()
        cfg = tls_config(pki, tls_broker.port, host="127.0.0.1", tls={"insecure_skip_hostname_check": True})
        sink = MqttSink(cfg, "dev", tmp_path / "b")
        assert "insecure_skip_hostname_check is on" in caplog.text  # warned at start-up
        sink.start()
        try:
            assert wait_until(lambda: sink.stats()["connected"], timeout=15)
        finally:
            sink.close()


def test_unusable_certificate_files_are_config_errors(pki: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"mqtt\.tls\.ca_file"):
        MqttSink(MqttConfig(tls={"enabled": True, "ca_file": bad}), "dev", tmp_path)
    with pytest.raises(ConfigError, match="cert_file/key_file"):
        MqttSink(MqttConfig(tls={"enabled": True, "cert_file": pki / "client.crt", "key_file": pki / "server.key"}),
                 "dev", tmp_path)
