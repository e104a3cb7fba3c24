"""Containers run with Kubernetes' runtime default: containerd's default seccomp profile and the default
capability set (real master, kubelet, containerd and runc); opting out takes an RBAC grant.

The kernel's view is the proof: /proc/self/status inside the container says `Seccomp: 2` (filter mode) and
its bounding set is the runtime default (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_MODULE, ... gone).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from harness.builders import make_pod
from kybernetes.core.identity.certs import Identity
from kybernetes.ctl.client import Client, ForbiddenError
from kybernetes.ctl.client.identity import issue_certificate
from kybernetes.proto import objects_pb2 as pb

if TYPE_CHECKING:
    from harness.kubelet import Node

pytestmark = pytest.mark.containerd

# containerd's (and Docker's) default capabilities: CHOWN DAC_OVERRIDE FOWNER FSETID KILL SETGID SETUID SETPCAP
# NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
RUNTIME_DEFAULT_CAPS = 0x00000000A80425FB
CAP_SYS_ADMIN = 21


def _status_field(status: str, field: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith(field + ":"))


def _sleeper(name: str, *, profile: str = "") -> pb.Pod:
    pod = make_pod(name, command=["sleep", "3600"], grace_seconds=0)
    if profile:
        pod.spec.security_context.seccomp_profile.type = profile
    return pod


async def test_containers_get_the_default_seccomp_profile_and_capabilities(node: Node):
    await node.create(_sleeper("confined"))
    await node.pod_where("confined", lambda p: p.status.phase == "Running", message="confined Running")
    code, out, _ = await node.exec("confined", ["cat", "/proc/self/status"])
    assert code == 0
    status = out.decode()
    assert _status_field(status, "Seccomp") == "2", "filter mode: containerd's default profile"
    bounding = int(_status_field(status, "CapBnd"), 16)
    assert bounding == RUNTIME_DEFAULT_CAPS and not bounding & (1 << CAP_SYS_ADMIN)
    # What the profile forbids fails: unshare(CLONE_NEWUSER) is blocked for a container without privileges.
    code, _, err = await node.exec("confined", ["unshare", "-U", "true"])
    assert code != 0, err

    # An admin may opt a pod out; the kernel then filters nothing.
    await node.create(_sleeper("unconfined", profile="Unconfined"))
    await node.pod_where("unconfined", lambda p: p.status.phase == "Running", message="unconfined Running")
    code, out, _ = await node.exec("unconfined", ["cat", "/proc/self/status"])
    assert code == 0 and _status_field(out.decode(), "Seccomp") == "0"


async def test_opting_out_of_seccomp_needs_its_own_grant(node: Node):
    admin = node.client
    editor = await issue_certificate(admin, Identity("erin", ("editors",)))
    binding = pb.RoleBinding(api_version="rbac.authorization.k8s.io/v1", kind="RoleBinding",
                             role_ref=pb.RoleRef(kind="ClusterRole", name="edit"),
                             subjects=[pb.Subject(kind="Group", name="editors")])
    binding.metadata.name, binding.metadata.namespace = "editors-edit", "default"
    await admin.create(binding)
    async with Client(node.master.address, credentials=editor) as as_erin:
        created = await as_erin.create(make_pod("plain", node=node.name))
        assert created.metadata.name == "plain"
        with pytest.raises(ForbiddenError) as refused:
            await as_erin.create(_sleeper("escape", profile="Unconfined"))
        assert refused.value.message == ('seccompprofiles "unconfined" is forbidden: User "erin" cannot use '
                                         'resource "seccompprofiles" in the namespace "default"')
        pod = make_pod("sneaky")
        pod.spec.containers[0].security_context.seccomp_profile.type = "Unconfined"
        with pytest.raises(ForbiddenError):
            await as_erin.create(pod)
    with pytest.raises(Exception) as invalid:
        await admin.create(_sleeper("bad", profile="Localhost"))
    assert 'spec.securityContext.seccompProfile.type: Unsupported value: "Localhost"' in str(invalid.value)
