"""RBAC against a real master: Role, ClusterRole, RoleBinding and ClusterRoleBinding objects decide what a
user (a client certificate's CN and O) may do; `kybctl auth can-i` and the server always agree.

The default ClusterRoles exist as objects; a `view` user reads and is refused every write in kubectl's words;
a table of cases compares can-i's answer with what the server actually does for the same request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from harness.builders import make_deployment, make_pod
from harness.master import MasterProcess
from harness.waiting import until
from kybernetes.core.identity.certs import Identity
from kybernetes.core.identity.kubeconfig import admin_config, save
from kybernetes.ctl.client import ApiError, Client, Credentials, ForbiddenError
from kybernetes.ctl.client.identity import issue_certificate, review
from tests.test_kybctl import fails, kyb, table

BINDINGS = """
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: viewers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: User, name: vera}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pod-reader, namespace: team}
rules:
- {apiGroups: [""], verbs: [get, list], resources: [pods]}
- {apiGroups: [""], verbs: [delete], resources: [pods], resourceNames: [scratch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: devs-read-pods, namespace: team}
roleRef: {kind: Role, name: pod-reader}
subjects:
- {kind: Group, name: devs}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: ed-edits-team, namespace: team}
roleRef: {kind: ClusterRole, name: edit}
subjects:
- {kind: User, name: ed}
"""


async def _credentials_file(client: Client, identity: Identity, path: Path) -> Path:
    credentials = await issue_certificate(client, identity)
    save(path, admin_config(server=client.server, credentials=credentials, user=identity.user))
    return path


async def test_default_roles_exist_and_a_view_user_only_reads(master: MasterProcess, client: Client,
                                                             tmp_path: Path):
    env = {"KYBCONFIG": str(master.kubeconfig)}
    roles = {r["NAME"] for r in table((await kyb(None, "get", "clusterroles", env=env)).out)}
    assert {"cluster-admin", "edit", "view", "system:node"} <= roles
    bindings = table((await kyb(None, "get", "clusterrolebindings", "-o", "wide", env=env)).out)
    admin_binding = next(b for b in bindings if b["NAME"] == "cluster-admin")
    assert admin_binding["ROLE"] == "ClusterRole/cluster-admin" and admin_binding["GROUPS"] == "system:masters"
    applied = await kyb(None, "apply", "-f", "-", stdin=BINDINGS, env=env)
    assert applied.code == 0, applied
    await client.create(make_pod("seen"))
    vera = await _credentials_file(client, Identity("vera"), tmp_path / "vera.conf")
    as_vera = {"KYBCONFIG": str(vera)}
    assert [r["NAME"] for r in table((await kyb(None, "get", "pods", env=as_vera)).out)] == ["seen"]
    assert (await kyb(None, "get", "pod", "seen", "-o", "name", env=as_vera)).out.strip() == "pod/seen"
    # Every write is refused, in kubectl's words, and changes nothing.
    assert await fails(None, "delete", "pod", "seen", env=as_vera) == (
        'Error from server (Forbidden): pods "seen" is forbidden: User "vera" cannot delete resource "pods" in '
        'the namespace "default"')
    assert await fails(None, "label", "pod", "seen", "a=b", env=as_vera) == (
        'Error from server (Forbidden): pods "seen" is forbidden: User "vera" cannot update resource "pods" in '
        'the namespace "default"')
    assert await fails(None, "create", "deployment", "web", "--image", "kyb/hello:v1", env=as_vera) == (
        'Error from server (Forbidden): deployments "web" is forbidden: User "vera" cannot create resource '
        '"deployments" in the namespace "default"')
    assert await fails(None, "get", "nodes", env=as_vera) == (
        'Error from server (Forbidden): nodes is forbidden: User "vera" cannot list resource "nodes" at the '
        'cluster scope')
    assert (await client.get("pods", "seen")).metadata.labels.get("a") is None
    # Watching is reading: it works.
    async with Client(kubeconfig=vera) as reader:
        async for event in reader.watch_once("pods", namespace="default"):
            assert event.type == "ADDED" and event.object.metadata.name == "seen"
            break


Action = Callable[[Client], Awaitable[object]]


def _cases() -> list[tuple[str, str, str, str, str, Action]]:
    """(user, verb, resource, namespace, name, the same request made for real)."""
    def create_pod(ns: str, name: str) -> Action:
        return lambda c: c.create(make_pod(name, namespace=ns))

    def delete(resource: str, ns: str, name: str) -> Action:
        return lambda c: c.delete(resource, name, namespace=ns, unconditional=True)

    def get(resource: str, ns: str, name: str) -> Action:
        return lambda c: c.get(resource, name, namespace=ns)

    def listing(resource: str, ns: str) -> Action:
        return lambda c: c.list(resource, namespace=ns)

    def create_deploy(ns: str, name: str) -> Action:
        return lambda c: c.create(make_deployment(name, namespace=ns))

    cases: list[tuple[str, str, str, str, str, Action]] = []
    for user in ("vera", "dana", "ed", "nobody"):
        cases += [
            (user, "get", "pods", "team", "scratch", get("pods", "team", "scratch")),
            (user, "list", "pods", "team", "", listing("pods", "team")),
            (user, "list", "pods", "default", "", listing("pods", "default")),
            (user, "delete", "pods", "team", "scratch", delete("pods", "team", "scratch")),
            (user, "delete", "pods", "team", "keep", delete("pods", "team", "keep")),
            (user, "create", "pods", "team", "new", create_pod("team", f"new-{user}")),
            (user, "create", "deployments", "team", "", create_deploy("team", f"web-{user}")),
            (user, "list", "nodes", "", "", listing("nodes", "")),
            (user, "get", "deployments", "default", "none", get("deployments", "default", "none")),
        ]
    return cases


async def test_can_i_agrees_with_the_server(master: MasterProcess, client: Client, tmp_path: Path):
    applied = await kyb(None, "apply", "-f", "-", stdin=BINDINGS, env={"KYBCONFIG": str(master.kubeconfig)})
    assert applied.code == 0, applied
    users = {"vera": Identity("vera"), "dana": Identity("dana", ("devs",)), "ed": Identity("ed"),
             "nobody": Identity("nobody", ("others",))}
    credentials: dict[str, Credentials] = {u: await issue_certificate(client, i) for u, i in users.items()}
    expected = {
        ("vera", "get", "pods", "team"), ("vera", "list", "pods", "team"), ("vera", "list", "pods", "default"),
        ("vera", "get", "deployments", "default"),
        ("dana", "get", "pods", "team"), ("dana", "list", "pods", "team"),
        ("ed", "get", "pods", "team"), ("ed", "list", "pods", "team"), ("ed", "delete", "pods", "team"),
        ("ed", "create", "pods", "team"), ("ed", "create", "deployments", "team"),
    }
    cases = _cases()
    assert len(cases) >= 20
    checked = 0
    for user, verb, resource, namespace, name, action in cases:
        for pod in ("scratch", "keep"):
            try:
                await client.create(make_pod(pod, namespace="team"))
            except ApiError:
                pass
        async with Client(master.address, credentials=credentials[user]) as as_user:
            said, _ = await review(as_user, verb=verb, resource=resource, namespace=namespace, name=name)
            try:
                await action(as_user)
                done = True
            except ForbiddenError:
                done = False
            except ApiError:
                done = True  # authorized, refused for another reason (NotFound, say)
        want = (user, verb, resource, namespace) in expected or (user, verb, name) == ("dana", "delete", "scratch")
        assert (said, done) == (want, want), (user, verb, resource, namespace, name)
        # The kybctl form answers the same.
        ref = f"{resource}/{name}" if name else resource
        answer = await kyb(None, "auth", "can-i", verb, ref, "-n", namespace or "default", "--as", user,
                           *sum((["--as-group", g] for g in users[user].groups), []),
                           env={"KYBCONFIG": str(master.kubeconfig)})
        assert (answer.code, answer.out.strip()) == ((0, "yes") if want else (1, "no")), (user, verb, ref)
        checked += 1
    assert checked == len(cases)


async def test_bindings_change_what_a_user_may_do_at_once(master: MasterProcess, client: Client,
                                                          tmp_path: Path):
    zed = await issue_certificate(client, Identity("zed"))
    async with Client(master.address, credentials=zed) as as_zed:
        with pytest.raises(ForbiddenError):
            await as_zed.list("pods", namespace="default")
        env = {"KYBCONFIG": str(master.kubeconfig)}
        made = await kyb(None, "create", "-f", "-", env=env, stdin="""
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: zed-view, namespace: default}
roleRef: {kind: ClusterRole, name: view}
subjects: [{kind: User, name: zed}]
""")
        assert made.code == 0, made
        await until(lambda: _allowed(as_zed), timeout=10, message="the binding takes effect")
        with pytest.raises(ForbiddenError):
            await as_zed.list("pods", namespace="kube-system")  # a RoleBinding works in its namespace only
        assert (await kyb(None, "delete", "rolebinding", "zed-view", env=env)).code == 0
        await until(lambda: _refused(as_zed), timeout=10, message="the deleted binding no longer grants")
    # Bad RBAC objects are refused naming the field and the rule.
    line = await fails(None, "create", "-f", "-", env={"KYBCONFIG": str(master.kubeconfig)}, stdin="""
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: bad}
roleRef: {kind: Role, name: x}
subjects: [{kind: Robot, name: r2}]
""")
    assert 'roleRef.kind: Unsupported value: "Role"' in line and 'subjects[0].kind: Unsupported value: "Robot"' in line


async def _allowed(client: Client) -> bool:
    try:
        await client.list("pods", namespace="default")
    except ForbiddenError:
        return False
    return True


async def _refused(client: Client) -> bool:
    return not await _allowed(client)
