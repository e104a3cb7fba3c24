"""Kubernetes' service environment variables, given to containers for the Services that exist when they start.

For a Service `redis-primary` with clusterIP 10.96.0.11 and port 6379/TCP a
container sees, as in Kubernetes (names upper-cased, '-' → '_'):
  REDIS_PRIMARY_SERVICE_HOST=10.96.0.11    REDIS_PRIMARY_SERVICE_PORT=6379
  REDIS_PRIMARY_SERVICE_PORT_<PORTNAME>=6379 (named ports)
  REDIS_PRIMARY_PORT=tcp://10.96.0.11:6379 and the REDIS_PRIMARY_PORT_6379_TCP* docker-link family.
Only Services of the pod's namespace count, and the container's own env wins.
"""

from __future__ import annotations

from collections.abc import Iterable

from kybernetes.proto import objects_pb2 as pb


def _env_name(name: str) -> str:
    return name.upper().replace("-", "_")


def service_environment(services: Iterable[pb.Service], namespace: str) -> dict[str, str]:
    """The variables for every Service with a cluster IP in `namespace`."""
    env: dict[str, str] = {}
    for svc in sorted(services, key=lambda s: s.metadata.name):
        ip = svc.spec.cluster_ip
        if svc.metadata.namespace != namespace or not ip or ip == "None" or not svc.spec.ports:
            continue
        prefix = _env_name(svc.metadata.name)
        first = svc.spec.ports[0]
        env[f"{prefix}_SERVICE_HOST"] = ip
        env[f"{prefix}_SERVICE_PORT"] = str(first.port)
        for port in svc.spec.ports:
            if port.name:
                env[f"{prefix}_SERVICE_PORT_{_env_name(port.name)}"] = str(port.port)
        env[f"{prefix}_PORT"] = f"{(first.protocol or 'TCP').lower()}://{ip}:{first.port}"
        for port in svc.spec.ports:
            proto = port.protocol or "TCP"
            link = f"{prefix}_PORT_{port.port}_{proto}"
            env[link] = f"{proto.lower()}://{ip}:{port.port}"
            env[f"{link}_PROTO"] = proto.lower()
            env[f"{link}_PORT"] = str(port.port)
            env[f"{link}_ADDR"] = ip
    return env
