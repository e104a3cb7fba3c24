"""Ports, as pods and services both spell them: numbers, names and protocols.

A port number is 1-65535; a port that may also be given by name (a probe's
port, a Service's targetPort) is an IntOrString whose string is an IANA service
name, the name of a container port. Pods (container ports, probes) and
services (ports, endpoints) validate their ports with these.
"""

from __future__ import annotations

from kybernetes.core.api import formats
from kybernetes.master.api.validation.errors import Errors
from kybernetes.proto import objects_pb2 as pb

PROTOCOLS = ("TCP", "UDP")
_PORT_RANGE_MSG = "must be between 1 and 65535, inclusive"


def validate_port_number(errors: Errors, path: str, port: int) -> None:
    if not 1 <= port <= 65535:
        errors.invalid(path, port, _PORT_RANGE_MSG)


def validate_int_or_string_port(errors: Errors, path: str, value: pb.IntOrString, *, required: bool) -> None:
    """A port given as a number or as the name of a container port."""
    which = value.WhichOneof("value")
    if which is None or (which == "str_val" and not value.str_val):
        if required:
            errors.required(path)
        return
    if which == "int_val":
        validate_port_number(errors, path, value.int_val)
    else:
        errors.check(path, value.str_val, formats.iana_svc_name)
