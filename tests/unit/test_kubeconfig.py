"""Credentials files: kubeconfig's shape, resolved to a server and credentials; every mistake is one line
naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kybernetes.core.identity.certs import Identity
from kybernetes.core.identity.credentials import Credentials
from kybernetes.core.identity.kubeconfig import KubeConfigError, admin_config, default_path, resolve, save
from kybernetes.master.pki.authority import ClusterAuthority


@pytest.fixture(scope="module")
def credentials() -> Credentials:
    authority = ClusterAuthority.create()
    issued = authority.issue_client(Identity("admin", ("system:masters",)))
    assert issued.key is not None
    return Credentials(ca=authority.certificate_pem, certificate=issued.certificate, key=issued.key)


def test_admin_config_round_trips_with_mode_0600(tmp_path: Path, credentials: Credentials):
    path = tmp_path / "sub" / "config"
    save(path, admin_config(server="10.0.0.5:6443", credentials=credentials))
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700
    target = resolve(path)
    assert (target.server, target.context, target.namespace) == ("10.0.0.5:6443", "admin@kybernetes", "")
    assert target.credentials == credentials
    assert target.credentials.identity == Identity("admin", ("system:masters",))


def test_file_references_https_prefix_and_namespace(tmp_path: Path, credentials: Credentials):
    for name, data in (("ca.crt", credentials.ca), ("me.crt", credentials.certificate), ("me.key", credentials.key)):
        (tmp_path / name).write_bytes(data)
    config = {"clusters": [{"name": "c", "cluster": {"server": "https://m:6443/", "certificate-authority": "ca.crt"}}],
              "users": [{"name": "u", "user": {"client-certificate": "me.crt", "client-key": "me.key"}}],
              "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "team"}}],
              "current-context": "x"}
    (tmp_path / "config").write_text(yaml.safe_dump(config))
    target = resolve(tmp_path / "config")
    assert (target.server, target.namespace) == ("m:6443", "team")
    assert target.credentials == credentials


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda c: c.pop("current-context"), "current-context is not set"),
    (lambda c: c.update({"current-context": "nope"}), 'context "nope" not found'),
    (lambda c: c["contexts"][0]["context"].pop("user"), 'context "admin@kybernetes": cluster and user: Required'),
    (lambda c: c["users"][0]["user"].pop("client-key-data"), 'user "admin": client-key-data (or client-key)'),
    (lambda c: c["users"][0]["user"].update({"client-key-data": "%%%"}), "client-key-data: not base64"),
    (lambda c: c["clusters"][0]["cluster"].pop("server"), 'cluster "kybernetes": server: Required value'),
    (lambda c: c.update({"users": "x"}), "users: must be a list"),
])
def test_mistakes_name_the_file_and_the_field(tmp_path: Path, credentials: Credentials, mutate, message):
    config = admin_config(server="m:6443", credentials=credentials)
    mutate(config)
    path = tmp_path / "config"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(KubeConfigError) as raised:
        resolve(path)
    assert str(raised.value).startswith(f"{path}: ") and message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_missing_and_unparsable_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(KubeConfigError, match="no such credentials file"):
        resolve(tmp_path / "absent")
    (tmp_path / "bad").write_text("clusters: [")
    with pytest.raises(KubeConfigError, match="not YAML"):
        resolve(tmp_path / "bad")
    monkeypatch.setenv("KYBCONFIG", str(tmp_path / "mine"))
    assert default_path() == tmp_path / "mine"
    monkeypatch.delenv("KYBCONFIG")
    assert default_path() == Path("~/.kyb/config").expanduser()
