"""kybctl's identity commands end to end (the real CLI as a child process, a real master): credentials files
and contexts (`config`), join tokens (`token`), user certificates (`certificate issue`), `auth whoami|can-i`."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from harness.master import MasterProcess
from tests.test_kybctl import fails, kyb, table


def _copy(master: MasterProcess, tmp_path: Path) -> Path:
    path = tmp_path / "config"
    shutil.copy(master.kubeconfig, path)
    path.chmod(0o600)
    return path


async def test_config_view_contexts_and_namespace(master: MasterProcess, tmp_path: Path):
    config = _copy(master, tmp_path)
    env = {"KYBCONFIG": str(config)}
    view = await kyb(None, "config", "view", env=env)
    assert view.code == 0, view
    shown = yaml.safe_load(view.out)
    assert shown["users"][0]["user"] == {"client-certificate-data": "DATA+OMITTED", "client-key-data": "REDACTED"}
    assert shown["clusters"][0]["cluster"]["server"] == master.address
    raw = yaml.safe_load((await kyb(None, "config", "view", "--raw", env=env)).out)
    assert raw == yaml.safe_load(config.read_text())
    rows = table((await kyb(None, "config", "get-contexts", env=env)).out)
    assert rows == [{"CURRENT": "*", "NAME": "admin@kybernetes", "CLUSTER": "kybernetes", "AUTHINFO": "admin",
                     "NAMESPACE": ""}]
    # A second context in another namespace; switching to it changes what `get` reads.
    made = await kyb(None, "config", "set-context", "team", "--cluster", "kybernetes", "--user", "admin",
                     "--namespace", "team-a", env=env)
    assert (made.code, made.out.strip()) == (0, 'Context "team" created.')
    assert config.stat().st_mode & 0o777 == 0o600
    switched = await kyb(None, "config", "use-context", "team", env=env)
    assert (switched.code, switched.out.strip()) == (0, 'Switched to context "team".')
    assert (await kyb(None, "config", "current-context", env=env)).out.strip() == "team"
    empty = await kyb(None, "get", "pods", env=env)
    assert empty.code == 0 and empty.err.strip() == "No resources found in team-a namespace."
    # --context picks one for a single command; a wrong one is one line, exit 1.
    assert (await kyb(None, "--context", "admin@kybernetes", "get", "pods", env=env)).err.strip() == \
        "No resources found in default namespace."
    assert await fails(None, "config", "use-context", "nope", env=env) == \
        'error: no context exists with the name: "nope"'
    assert await fails(None, "get", "pods", "--context", "nope", env=env) == \
        f'error: {config}: context "nope" not found'
    missing = tmp_path / "missing"
    line = await fails(None, "--kubeconfig", str(missing), "get", "pods")
    assert line.startswith(f"error: {missing}: no such credentials file")


async def test_tokens_create_list_delete(master: MasterProcess, tmp_path: Path):
    env = {"KYBCONFIG": str(master.kubeconfig)}
    created = await kyb(None, "token", "create", "--ttl", "2h", "--description", "rack 3", env=env)
    assert created.code == 0, created
    token = created.out.strip()
    assert token.startswith("KYB1") and "::" in token
    token_id = token.split("::")[1].split(".")[0]
    rows = table((await kyb(None, "token", "list", env=env)).out)
    row = next(r for r in rows if r["ID"] == token_id)
    assert row["DESCRIPTION"] == "rack 3" and row["TTL"] in ("119m", "120m", "2h")
    assert token.split(".")[-1] not in (await kyb(None, "token", "list", env=env)).out, "never the secret"
    deleted = await kyb(None, "token", "delete", token_id, env=env)
    assert (deleted.code, deleted.out.strip()) == (0, f'token "{token_id}" deleted')
    assert all(r["ID"] != token_id for r in table((await kyb(None, "token", "list", env=env)).out or "ID\n"))
    assert await fails(None, "token", "delete", token_id, env=env) == \
        f'Error from server (NotFound): tokens "{token_id}" not found'
    assert await fails(None, "token", "create", "--ttl", "soon", env=env) == \
        'error: invalid argument "soon" for "--ttl" flag: a duration such as 30s, 2m or 1h'


async def test_a_user_certificate_whoami_and_can_i(master: MasterProcess, tmp_path: Path):
    env = {"KYBCONFIG": str(master.kubeconfig)}
    alice = tmp_path / "alice.conf"
    issued = await kyb(None, "certificate", "issue", "alice", "--group", "dev", "--group", "qa", "--out",
                       str(alice), env=env)
    assert issued.code == 0, issued
    assert alice.stat().st_mode & 0o777 == 0o600
    who = table((await kyb(None, "--kubeconfig", str(alice), "auth", "whoami")).out)
    assert who == [{"ATTRIBUTE": "Username", "VALUE": "alice"}, {"ATTRIBUTE": "Groups", "VALUE": "[dev qa]"}]
    admin = table((await kyb(None, "auth", "whoami", env=env)).out)
    assert admin[0]["VALUE"] == "admin" and admin[1]["VALUE"] == "[system:masters]"
    # No binding names alice: the server refuses her, in kubectl's words, and can-i agrees.
    assert await fails(None, "--kubeconfig", str(alice), "get", "pods") == (
        'Error from server (Forbidden): pods is forbidden: User "alice" cannot list resource "pods" in the '
        'namespace "default"')
    said = await kyb(None, "--kubeconfig", str(alice), "auth", "can-i", "list", "pods")
    assert (said.code, said.out.strip()) == (1, "no")
    said = await kyb(None, "auth", "can-i", "delete", "deployments", env=env)
    assert (said.code, said.out.strip()) == (0, "yes")
    said = await kyb(None, "auth", "can-i", "list", "pods", "--as", "alice", env=env)
    assert (said.code, said.out.strip()) == (1, "no")
    # Asking for someone else needs impersonation rights.
    assert await fails(None, "--kubeconfig", str(alice), "auth", "can-i", "get", "pods", "--as", "admin") == (
        'Error from server (Forbidden): users "admin" is forbidden: User "alice" cannot impersonate resource '
        '"users" at the cluster scope')
