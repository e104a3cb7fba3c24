"""RBAC and Node authorization decisions (issue: identity on every link), on a table of cases."""

from __future__ import annotations

import pytest

from kybernetes.core.identity.certs import Identity, node_identity
from kybernetes.master.auth import node
from kybernetes.master.auth.rbac import Authorizer, Binding, PolicyRule, Request, Role, Subject

ALICE = Identity("alice", ("devs",))  # view everywhere (ClusterRoleBinding), edit in "team-a" (RoleBinding)
BOB = Identity("bob")  # a Role in "team-b": get pods named web-1 only; logs of any pod
CAROL = Identity("carol", ("ops",))  # group ops: cluster-admin
ADMIN = Identity("admin", ("system:masters",))
NOBODY = Identity("mallory")

AUTHORIZER = Authorizer(
    roles=[Role("pod-reader", (PolicyRule(verbs=("get",), resources=("pods",), resource_names=("web-1",)),
                               PolicyRule(verbs=("get",), resources=("pods/*",))), namespace="team-b")],
    bindings=[
        Binding("devs-view", "ClusterRole", "view", (Subject("Group", "devs"),)),
        Binding("alice-edit", "ClusterRole", "edit", (Subject("User", "alice"),), namespace="team-a"),
        Binding("bob-reads", "Role", "pod-reader", (Subject("User", "bob"),), namespace="team-b"),
        Binding("ops-admin", "ClusterRole", "cluster-admin", (Subject("Group", "ops"),)),
        Binding("dangling", "ClusterRole", "no-such-role", (Subject("User", "mallory"),)),
        Binding("wrong-ns-role", "Role", "pod-reader", (Subject("User", "mallory"),), namespace="team-a"),
    ],
)

CASES = [
    # who, verb, resource, namespace, name, allowed
    (ALICE, "get", "pods", "default", "x", True),
    (ALICE, "list", "deployments", "", "", True),  # view everywhere, all namespaces
    (ALICE, "watch", "services", "team-b", "", True),
    (ALICE, "get", "pods/log", "default", "x", True),
    (ALICE, "create", "pods", "default", "", False),
    (ALICE, "delete", "deployments", "default", "web", False),
    (ALICE, "create", "pods", "team-a", "", True),  # edit in team-a
    (ALICE, "update", "deployments", "team-a", "web", True),
    (ALICE, "create", "pods/exec", "team-a", "x", True),
    (ALICE, "create", "pods/exec", "default", "x", False),
    (ALICE, "get", "nodes", "", "node1", False),  # view covers no cluster-scoped kind
    (ALICE, "update", "nodes", "", "node1", False),
    (BOB, "get", "pods", "team-b", "web-1", True),  # resourceNames
    (BOB, "get", "pods", "team-b", "web-2", False),
    (BOB, "list", "pods", "team-b", "", False),  # names never cover a list
    (BOB, "get", "pods/log", "team-b", "web-2", True),  # pods/* covers subresources
    (BOB, "get", "pods", "team-a", "web-1", False),  # a Role binds in its namespace only
    (CAROL, "delete", "nodes", "", "node1", True),
    (CAROL, "create", "deployments", "team-z", "", True),
    (ADMIN, "delete", "nodes", "", "node1", True),  # system:masters bypasses
    (NOBODY, "get", "pods", "default", "x", False),  # bound to a missing role
    (NOBODY, "get", "pods", "team-a", "web-1", False),  # a Role of another namespace
]


@pytest.mark.parametrize(("who", "verb", "resource", "namespace", "name", "allowed"), CASES)
def test_rbac_table(who: Identity, verb: str, resource: str, namespace: str, name: str, allowed: bool):
    decision = AUTHORIZER.authorize(Request(who, verb, resource, namespace, name))
    assert decision.allowed is allowed, decision.reason


def test_a_refusal_reads_as_kubectls():
    decision = AUTHORIZER.authorize(Request(ALICE, "delete", "deployments", "default", "web"))
    assert decision.reason == ('deployments "web" is forbidden: User "alice" cannot delete resource "deployments" '
                               'in the namespace "default"')
    decision = AUTHORIZER.authorize(Request(ALICE, "create", "pods/exec", "default", "x"))
    assert 'cannot create resource "pods" with subresource "exec" in the namespace "default"' in decision.reason
    assert AUTHORIZER.authorize(Request(NOBODY, "list", "nodes")).reason.endswith("at the cluster scope")


def test_an_allowed_request_names_the_binding():
    assert AUTHORIZER.authorize(Request(BOB, "get", "pods", "team-b", "web-1")).reason == \
        'RoleBinding "bob-reads" of Role "pod-reader"'


def test_node_identity_registers_and_updates_only_itself():
    node1 = node_identity("node1")
    assert node.may_register(node1, "node1").allowed
    refused = node.may_register(node1, "node2")
    assert not refused.allowed and refused.reason == 'node "node1" cannot register as node "node2"'
    assert not node.may_register(Identity("system:node:node1"), "node1").allowed  # not in system:nodes
    assert not node.may_register(ADMIN, "node1").allowed
    assert node.may_update_node(node1, "node1").allowed
    assert not node.may_update_node(node1, "node2").allowed


def test_node_identity_sees_and_reports_only_its_pods():
    node1 = node_identity("node1")
    assert node.may_see_pod(node1, "node1") and not node.may_see_pod(node1, "node2")
    assert not node.may_see_pod(node1, "")
    assert node.may_report_pod(node1, pod="default/web-1", pod_node_name="node1").allowed
    refused = node.may_report_pod(node1, pod="default/web-2", pod_node_name="node2")
    assert not refused.allowed and refused.reason == \
        'node "node1" cannot report status of pod "default/web-2" bound to node "node2"'
    assert not node.may_report_pod(node1, pod="default/x", pod_node_name="").allowed
