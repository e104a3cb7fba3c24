"""Service environment variables, as Kubernetes names them."""

from kybernetes.kubelet.pods.service_env import service_environment
from kybernetes.proto import objects_pb2 as pb


def svc(name: str, namespace: str, ip: str, *ports: tuple[str, int]) -> pb.Service:
    s = pb.Service()
    s.metadata.name, s.metadata.namespace = name, namespace
    s.spec.cluster_ip = ip
    for port_name, port in ports:
        s.spec.ports.add(name=port_name, port=port, protocol="TCP")
    return s


def test_variables_for_services_of_the_pods_namespace_only():
    env = service_environment([svc("web-front", "default", "10.96.0.5", ("http", 80), ("", 443)),
                               svc("elsewhere", "other", "10.96.0.6", ("", 1)),
                               svc("headless", "default", "None", ("", 2))], "default")
    assert env["WEB_FRONT_SERVICE_HOST"] == "10.96.0.5"
    assert env["WEB_FRONT_SERVICE_PORT"] == "80"
    assert env["WEB_FRONT_SERVICE_PORT_HTTP"] == "80"
    assert env["WEB_FRONT_PORT"] == "tcp://10.96.0.5:80"
    assert env["WEB_FRONT_PORT_443_TCP_ADDR"] == "10.96.0.5"
    assert not any(k.startswith(("ELSEWHERE", "HEADLESS")) for k in env)
