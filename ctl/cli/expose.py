"""`kybctl expose TYPE/NAME --port P`: a Service in front of a Deployment's, ReplicaSet's, pod's or Service's pods.

The Service is built by `service_for` (pure), following kubectl's service
generator: the selector is the Deployment's/ReplicaSet's matchLabels, the
pod's labels or the Service's selector; the labels are the exposed object's
(or --labels); with --port one port (a comma list gives several, named
port-1, port-2, …), else the ports the object declares (its containers'
ports); targetPort is --target-port (a number or a port name) or else the
port itself. The master allocates the clusterIP and any nodePort.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from kybernetes.core.api.kinds import ApiObject
from kybernetes.ctl.cli.args import api_group, check_selector, object_ref, parse_resource_args
from kybernetes.ctl.cli.errors import CliError, usage_error
from kybernetes.ctl.cli.output import echo
from kybernetes.ctl.cli.runner import run
from kybernetes.ctl.cli.settings import Settings, command, pass_settings
from kybernetes.ctl.client import Client
from kybernetes.proto import objects_pb2 as pb

EXPOSABLE = ("Pod", "Service", "ReplicaSet", "Deployment")
_OUTPUTS = click.Choice(["json", "yaml", "name"])
_DRY_RUN = click.Choice(["none", "client"])


@dataclass(frozen=True, slots=True)
class ExposeOptions:
    """The flags of `expose` that shape the Service."""

    name: str = ""
    port: str = ""
    target_port: str = ""
    protocol: str = ""
    type: str = ""
    selector: str = ""
    labels: str = ""
    session_affinity: str = ""
    cluster_ip: str = ""


def _pod_spec(obj: ApiObject) -> pb.PodSpec | None:
    if isinstance(obj, pb.Pod):
        return obj.spec
    if isinstance(obj, pb.Deployment | pb.ReplicaSet):
        return obj.spec.template.spec
    return None


def _format_expression(expr: pb.LabelSelectorRequirement) -> str:
    values = ",".join(expr.values)
    return f"{expr.key} {expr.operator} ({values})" if values else f"{expr.key} {expr.operator}"


def selector_for(obj: ApiObject) -> dict[str, str]:
    """The map-based selector of the pods behind `obj` (kubectl's MapBasedSelectorForObject)."""
    if isinstance(obj, pb.Pod):
        if not obj.metadata.labels:
            raise CliError("error: couldn't retrieve selectors via --selector flag or introspection: the pod has "
                           "no labels and cannot be exposed")
        return dict(obj.metadata.labels)
    if isinstance(obj, pb.Service):
        if not obj.spec.selector:
            raise CliError("error: couldn't retrieve selectors via --selector flag or introspection: the service "
                           "has no pod selector set")
        return dict(obj.spec.selector)
    if isinstance(obj, pb.Deployment | pb.ReplicaSet):
        expressions = obj.spec.selector.match_expressions
        if expressions:
            listed = ", ".join(_format_expression(e) for e in expressions)
            raise CliError("error: couldn't retrieve selectors via --selector flag or introspection: couldn't "
                           f"convert expressions - [{listed}] to map-based selector format")
        return dict(obj.spec.selector.match_labels)
    raise CliError(f"error: cannot expose a {type(obj).__name__}")


def ports_for(obj: ApiObject) -> list[tuple[int, str]]:
    """The (port, protocol) pairs `obj` declares: its containers' ports, or a Service's ports."""
    if isinstance(obj, pb.Service):
        return [(p.port, p.protocol or "TCP") for p in obj.spec.ports]
    spec = _pod_spec(obj)
    if spec is None:
        return []
    return [(p.container_port, p.protocol or "TCP") for c in spec.containers for p in c.ports]


def _parse_map(text: str, *, flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for term in filter(None, (t.strip() for t in text.split(","))):
        key, eq, value = term.partition("=")
        if not eq or not key:
            raise CliError(f"error: invalid {flag} {text!r}: expected key=value[,key=value…]")
        out[key] = value
    return out


def _port_number(text: str, *, flag: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise CliError(f'error: invalid argument "{text}" for "{flag}" flag: a port number between 1 and 65535')
    return int(text)


def service_for(obj: ApiObject, options: ExposeOptions, *, namespace: str) -> pb.Service:
    """The Service `kubectl expose` would create for `obj` (see the module docstring)."""
    if type(obj).__name__ not in EXPOSABLE:
        raise CliError(f"error: cannot expose a {type(obj).__name__}")
    service = pb.Service(api_version="v1", kind="Service")
    service.metadata.name = options.name or obj.metadata.name
    service.metadata.namespace = namespace
    labels = _parse_map(options.labels, flag="--labels") if options.labels else dict(obj.metadata.labels)
    service.metadata.labels.update(labels)
    if options.selector:
        service.spec.selector.update(_parse_map(options.selector, flag="--selector"))
    else:
        service.spec.selector.update(selector_for(obj))

    declared = ports_for(obj)
    protocols = {str(port): protocol for port, protocol in declared}
    if options.port:
        port_texts = [p.strip() for p in options.port.split(",")]
    else:
        port_texts = list(dict.fromkeys(str(port) for port, _ in declared))
    if not port_texts:
        raise CliError("error: couldn't find port via --port flag or introspection")
    for index, text in enumerate(port_texts):
        port = _port_number(text, flag="--port")
        name = f"port-{index + 1}" if len(port_texts) > 1 else ""
        protocol = options.protocol or protocols.get(text, "TCP")
        entry = service.spec.ports.add(name=name, port=port, protocol=protocol)
        if options.target_port:
            if options.target_port.isdigit():
                entry.target_port.int_val = int(options.target_port)
            else:
                entry.target_port.str_val = options.target_port
        elif isinstance(obj, pb.Service) and not options.port:
            entry.target_port.CopyFrom(next(p.target_port for p in obj.spec.ports if p.port == port))
        else:
            entry.target_port.int_val = port
    if options.type:
        service.spec.type = options.type
    if options.session_affinity:
        service.spec.session_affinity = options.session_affinity
    if options.cluster_ip:
        service.spec.cluster_ip = options.cluster_ip
    return service


@command("expose")
@click.argument("args", nargs=-1)
@click.option("--port", default="", help="The Service's port (comma-separated for several); default: the "
                                         "ports the object declares.")
@click.option("--target-port", default="", help="The pods' port: a number or a container port's name "
                                                "(default: the same as --port).")
@click.option("--protocol", default="", help="TCP (default) or UDP.")
@click.option("--type", "service_type", default="", help="ClusterIP (default) or NodePort.")
@click.option("--name", default="", help="The Service's name (default: the exposed object's).")
@click.option("--selector", default="", help="The pods to select, k=v[,k=v…] (default: the object's selector).")
@click.option("-l", "--labels", default="", help="The Service's labels, k=v[,k=v…] (default: the object's).")
@click.option("--session-affinity", default="", help="None (default) or ClientIP.")
@click.option("--cluster-ip", default="", help="A clusterIP to ask for (default: allocated).")
@click.option("--dry-run", type=_DRY_RUN, default="none", is_flag=False, flag_value="client",
              help="client: only print the Service that would be created.")
@click.option("-o", "--output", type=_OUTPUTS, help="Print the Service (json, yaml) or kind/name.")
@pass_settings
def expose(settings: Settings, args: tuple[str, ...], port: str, target_port: str, protocol: str,
           service_type: str, name: str, selector: str, labels: str, session_affinity: str, cluster_ip: str,
           dry_run: str, output: str | None) -> None:
    """Expose pods as a Service: expose deployment/NAME --port P [--target-port T] [--type NodePort] [--name N]"""
    resources = parse_resource_args(args)
    if not resources.targets:
        raise usage_error("You must provide one or more resources by argument or filename.")
    if len(resources.targets) != 1:
        raise usage_error("only one object can be exposed at a time")
    target = resources.targets[0]
    if target.kind.kind not in EXPOSABLE:
        kind_text = f"{target.kind.kind}.{api_group(target.kind)}" if api_group(target.kind) else target.kind.kind
        raise usage_error(f"cannot expose a {kind_text}")
    if selector:
        check_selector(selector)
    options = ExposeOptions(name=name, port=port, target_port=target_port, protocol=protocol, type=service_type,
                            selector=selector, labels=labels, session_affinity=session_affinity,
                            cluster_ip=cluster_ip)

    async def body(client: Client) -> Any:
        namespace = settings.namespace_for(target.kind)
        obj = await client.get(target.kind.resource, target.name, namespace=namespace)
        service = service_for(obj, options, namespace=namespace)
        return service if dry_run == "client" else await client.create(service)

    service = run(settings, body)
    _print(service, output=output, dry_run=dry_run == "client")


def _print(service: pb.Service, *, output: str | None, dry_run: bool) -> None:
    if output in ("json", "yaml"):
        from kybernetes.core.api import manifest
        from kybernetes.ctl.cli import printers

        echo(printers.format_document(manifest.to_dict(service), output))
    elif output == "name":
        echo(object_ref(service))
    else:
        echo(f"{object_ref(service)} exposed" + (" (dry run)" if dry_run else ""))

