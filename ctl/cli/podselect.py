"""Which pod and container `logs` and `exec` talk to, chosen as kubectl chooses them; PodAPI errors in its words.

`POD` names a pod; `TYPE/NAME` (deployment, replicaset, service, pod) names
the pods its selector matches, of which kubectl takes the first in its
"ByLogging" order (assigned before unassigned, Running before Unknown before
Pending, ready before not ready, longer ready, more restarts, older) and says
`Found N pods, using pod/X` on stderr when there was a choice. When nothing
matches yet it waits (kubectl's --pod-running-timeout) for a pod to appear.

The container is -c, else the pod's `kubectl.kubernetes.io/default-container`
annotation, else the first one (with kubectl's `Defaulted container "a" out
of: a, b` note on stderr when there were several).

The pod's kubelet answers through the master's PodAPI; its refusals (a
container still waiting, no previous instance, …) come back as gRPC errors
that kubectl would show as the API server's BadRequest.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc

from kybernetes.core.api.kinds import ApiObject, Kind
from kybernetes.core.api.objects import ready_since
from kybernetes.ctl.cli.args import resolve_kind
from kybernetes.ctl.cli.errors import CliError, one_line, usage_error
from kybernetes.ctl.cli.output import echo
from kybernetes.ctl.cli.settings import Settings
from kybernetes.ctl.client import ApiError, Client, NotFoundError, error_from_rpc
from kybernetes.proto import objects_pb2 as pb

DEFAULT_CONTAINER_ANNOTATION = "kubectl.kubernetes.io/default-container"
_PHASE_ORDER = {"Running": 0, "Unknown": 1, "Pending": 2}  # others count as 0, as in kubectl's map lookup


def go_type(kind: Kind) -> str:
    """The Go type kubectl names in some errors: `*v1.Node`."""
    version = kind.api_version.rpartition("/")[2]
    return f"*{version}.{kind.kind}"


def split_target(spec: str) -> tuple[Kind, str]:
    """`NAME` (a pod) or `TYPE/NAME`."""
    kind_name, slash, name = spec.partition("/")
    if not slash:
        return resolve_kind("pods"), spec
    if not kind_name or not name or "/" in name:
        raise usage_error(f'arguments in resource/name form must have a single resource and name: "{spec}"')
    return resolve_kind(kind_name), name


def logging_order_key(pod: pb.Pod) -> tuple[Any, ...]:
    """kubectl's ByLogging order as a sort key: the pod `logs TYPE/NAME` prefers sorts first."""
    ready = ready_since(pod)
    restarts = max((c.restart_count for c in pod.status.container_statuses), default=0)
    created = pod.metadata.creation_timestamp
    created_at = created.seconds + created.nanos / 1e9 if created.seconds or created.nanos else float("inf")
    return (
        not pod.spec.node_name,
        _PHASE_ORDER.get(pod.status.phase, 0),
        ready is None,
        # Ready for longer first; an unknown ready time ("zero") last.
        (ready if ready else float("inf")) if ready is not None else 0.0,
        -restarts,
        created_at,
    )


def selector_of(obj: ApiObject, kind: Kind, *, verb: str) -> str:
    """The label selector of the pods behind a Deployment, ReplicaSet or Service."""
    from kybernetes.core.api import selectors

    if isinstance(obj, pb.Deployment | pb.ReplicaSet):
        return selectors.to_string(obj.spec.selector)
    if isinstance(obj, pb.Service):
        if not obj.spec.selector:
            raise CliError(f"error: cannot {verb} *v1.Service: invalid service '{obj.metadata.name}': "
                           "Service is defined without a selector")
        return str(selectors.from_labels(obj.spec.selector))
    raise CliError(f"error: cannot {verb} {go_type(kind)}: selector for {go_type(kind)} not implemented")


async def first_pod(client: Client, *, namespace: str, selector: str, timeout: float) -> tuple[pb.Pod, int]:
    """The first pod matching `selector` in ByLogging order, and how many matched; waits up to `timeout` for one."""
    listed = await client.list("pods", namespace=namespace, label_selector=selector)
    if listed.items:
        pods = sorted(listed.items, key=logging_order_key)
        return pods[0], len(pods)

    async def first_added() -> pb.Pod:
        async for event in client.watch("pods", namespace=namespace, label_selector=selector,
                                        resource_version=listed.resource_version):
            if event.type == "ADDED":
                return event.object
        raise AssertionError("a watch never ends")

    try:
        return await asyncio.wait_for(first_added(), timeout), 1
    except TimeoutError:
        raise CliError("error: timed out waiting for the condition") from None


async def resolve_pod(client: Client, settings: Settings, spec: str, *, verb: str, timeout: float) -> pb.Pod:
    """The pod `spec` stands for (see the module docstring); NotFound as the server words it."""
    kind, name = split_target(spec)
    namespace = settings.namespace_for(kind)
    obj = await client.get(kind.resource, name, namespace=namespace)
    if isinstance(obj, pb.Pod):
        return obj
    selector = selector_of(obj, kind, verb=verb)
    pod, count = await first_pod(client, namespace=namespace, selector=selector, timeout=timeout)
    if count > 1:
        echo(f"Found {count} pods, using pod/{pod.metadata.name}", err=True)
    return pod


def all_container_names(pod: pb.Pod) -> str:
    return ", ".join(c.name for c in pod.spec.containers)


def choose_container(pod: pb.Pod, container: str) -> str:
    """-c if given (checked by the caller's rule), else the default-container annotation, else the first."""
    if container:
        return container
    names = [c.name for c in pod.spec.containers]
    annotated = pod.metadata.annotations.get(DEFAULT_CONTAINER_ANNOTATION, "")
    if annotated:
        if annotated in names:
            return annotated
        echo(f'Default container name "{annotated}" not found in pod {pod.metadata.name}', err=True)
    if not names:
        raise CliError(f"error: pod {pod.metadata.name} has no containers")
    if len(names) > 1:
        echo(f'Defaulted container "{names[0]}" out of: {all_container_names(pod)}', err=True)
    return names[0]


def require_host(pod: pb.Pod) -> None:
    """The API server's refusal for a pod that no node runs yet."""
    if not pod.spec.node_name:
        raise CliError(f"Error from server (BadRequest): pod {pod.metadata.name} does not have a host assigned")


def pod_api_error(err: grpc.RpcError | ApiError, *, pod: str) -> Exception:
    """A PodAPI failure worded as kubectl shows the API server's answer.

    The pod itself missing stays NotFound and an unreachable node stays
    ServiceUnavailable; what the kubelet refuses (container waiting, no
    previous instance, a bad container) is the server's BadRequest.
    """
    api = err if isinstance(err, ApiError) else error_from_rpc(err)
    message = one_line(api.message)
    if isinstance(api, NotFoundError) and message == f'pods "{pod}" not found':
        return api
    if api.code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                    grpc.StatusCode.INVALID_ARGUMENT):
        return CliError(f"Error from server (BadRequest): {message}")
    return api
