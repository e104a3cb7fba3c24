"""Admission validation: Kubernetes' rules for every kind, as pure functions.

`validate(obj, old=...)` walks one object and collects every violation as a
`FieldError` (a Kubernetes-style field path plus the rule text) before raising a
single `ValidationError`, so a user sees all problems at once, worded the way
kubectl words them:

    Deployment.apps "web" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0

It accepts objects before or after `master.api.defaults.apply_defaults`: an empty
enum field (protocol, restartPolicy, ...) is the default and therefore valid.
Only the update rules (immutable fields) look at `old`.

Validation runs on every write, so all patterns are compiled once at import and
the walk does no allocation beyond the error list.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from google.protobuf.message import Message

from ctl.api.kinds import kind_of
from ctl.api.quantity import QuantityError, parse_quantity
from proto import objects_pb2 as pb

__all__ = ["FieldError", "ValidationError", "validate"]


# ---------------------------------------------------------------- errors


@dataclass(frozen=True, slots=True)
class FieldError:
    """One violated rule: `path` in Kubernetes' spelling, `rule` the text after it."""

    path: str  # "spec.template.spec.containers[0].image"
    rule: str  # "Invalid value: \"Foo\": must be a valid image reference ..."

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}"


class ValidationError(ValueError):
    """An object the API server refuses, with every violated rule."""

    def __init__(self, *, kind: str, group: str, name: str, errors: list[FieldError]) -> None:
        self.kind = kind
        self.group = group
        self.name = name
        self.errors = list(errors)
        qualified = f"{kind}.{group}" if group else kind
        details = ", ".join(str(error) for error in self.errors)
        super().__init__(f"{qualified} {json.dumps(name)} is invalid: {details}")


def _show(value: object) -> str:
    """A value as Kubernetes prints it inside an error: strings quoted, maps and lists as JSON."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | Decimal):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return json.dumps(dict(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if isinstance(value, Iterable):
        return json.dumps(list(value), separators=(",", ":"), ensure_ascii=False, default=str)
    return repr(value)


class _Errors(list[FieldError]):
    """The error list one validation pass appends to, with Kubernetes' message forms."""

    def required(self, path: str, detail: str = "") -> None:
        self.append(FieldError(path, f"Required value: {detail}" if detail else "Required value"))

    def invalid(self, path: str, value: object, detail: str) -> None:
        self.append(FieldError(path, f"Invalid value: {_show(value)}: {detail}"))

    def unsupported(self, path: str, value: object, supported: Iterable[str]) -> None:
        choices = ", ".join(json.dumps(choice) for choice in supported)
        self.append(FieldError(path, f"Unsupported value: {_show(value)}: supported values: {choices}"))

    def duplicate(self, path: str, value: object) -> None:
        self.append(FieldError(path, f"Duplicate value: {_show(value)}"))

    def forbidden(self, path: str, detail: str) -> None:
        self.append(FieldError(path, f"Forbidden: {detail}"))

    def too_long(self, path: str, limit: int) -> None:
        self.append(FieldError(path, f"Too long: must have at most {limit} bytes"))

    def enum(self, path: str, value: str, supported: tuple[str, ...], *, allow_empty: bool = True) -> None:
        """An enum string: empty means the default (when allowed), anything else must be listed."""
        if not value:
            if not allow_empty:
                self.required(path)
            return
        if value not in supported:
            self.unsupported(path, value, supported)

    def non_negative(self, path: str, value: int) -> None:
        if value < 0:
            self.invalid(path, value, "must be greater than or equal to 0")


# ---------------------------------------------------------------- name formats
#
# Messages are Kubernetes' (k8s.io/apimachinery/pkg/util/validation), so users
# can search them.

_DNS1123_LABEL_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(rf"^{_DNS1123_LABEL_FMT}$")
_DNS1123_LABEL_MAX = 63
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    f"regex used for validation is '{_DNS1123_LABEL_FMT}')"
)

_DNS1123_SUBDOMAIN_FMT = rf"{_DNS1123_LABEL_FMT}(\.{_DNS1123_LABEL_FMT})*"
_DNS1123_SUBDOMAIN = re.compile(rf"^{_DNS1123_SUBDOMAIN_FMT}$")
_DNS1123_SUBDOMAIN_MAX = 253
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', "
    f"regex used for validation is '{_DNS1123_SUBDOMAIN_FMT}')"
)

_DNS1035_LABEL_FMT = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL = re.compile(rf"^{_DNS1035_LABEL_FMT}$")
_DNS1035_LABEL_MAX = 63
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
    f"regex used for validation is '{_DNS1035_LABEL_FMT}')"
)

_QUALIFIED_NAME_FMT = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME = re.compile(rf"^{_QUALIFIED_NAME_FMT}$")
_QUALIFIED_NAME_MAX = 63
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
    f"regex used for validation is '{_QUALIFIED_NAME_FMT}')"
)

_LABEL_VALUE_FMT = rf"({_QUALIFIED_NAME_FMT})?"
_LABEL_VALUE = re.compile(rf"^{_LABEL_VALUE_FMT}$")
_LABEL_VALUE_MAX = 63
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
    f"regex used for validation is '{_LABEL_VALUE_FMT}')"
)

_IANA_SVC_NAME_MAX = 15
_IANA_SVC_NAME_CHARS = re.compile(r"^[-a-z0-9]+$")
_HAS_LETTER = re.compile(r"[a-z]")

_ENV_VAR_NAME_FMT = r"[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV_VAR_NAME = re.compile(rf"^{_ENV_VAR_NAME_FMT}$")
_ENV_VAR_NAME_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
    "and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', "
    f"regex used for validation is '{_ENV_VAR_NAME_FMT}')"
)

_PERCENT = re.compile(r"^[0-9]+%$")
_PERCENT_MSG = (
    "a valid percent string must be a numeric string followed by an ending '%' "
    "(e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')"
)

# Image references, after github.com/distribution/reference's grammar.
_IMAGE_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IMAGE_DOMAIN = rf"(?:{_IMAGE_DOMAIN_COMPONENT}(?:\.{_IMAGE_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_IMAGE_REFERENCE = re.compile(
    rf"^(?P<name>(?:{_IMAGE_DOMAIN}/)?{_IMAGE_PATH_COMPONENT}(?:/{_IMAGE_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$",
    re.ASCII,  # Go's \w, which the tag grammar is written in, is ASCII-only
)
_IMAGE_NAME_MAX = 255
_IMAGE_MSG = (
    "must be a valid image reference: [registry[:port]/]path[:tag][@sha256:digest] with lowercase path "
    "components, a tag matching '[\\w][\\w.-]{0,127}' and a 64-hex-digit sha256 digest"
)


def _dns1123_label(value: str) -> list[str]:
    problems = []
    if len(value) > _DNS1123_LABEL_MAX:
        problems.append(f"must be no more than {_DNS1123_LABEL_MAX} characters")
    if not _DNS1123_LABEL.fullmatch(value):
        problems.append(_DNS1123_LABEL_MSG)
    return problems


def _dns1123_subdomain(value: str) -> list[str]:
    problems = []
    if len(value) > _DNS1123_SUBDOMAIN_MAX:
        problems.append(f"must be no more than {_DNS1123_SUBDOMAIN_MAX} characters")
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        problems.append(_DNS1123_SUBDOMAIN_MSG)
    return problems


def _dns1035_label(value: str) -> list[str]:
    problems = []
    if len(value) > _DNS1035_LABEL_MAX:
        problems.append(f"must be no more than {_DNS1035_LABEL_MAX} characters")
    if not _DNS1035_LABEL.fullmatch(value):
        problems.append(_DNS1035_LABEL_MSG)
    return problems


def _qualified_name(value: str) -> list[str]:
    """Label/annotation keys: an optional DNS-subdomain prefix and '/', then a 63-character name."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        prefix_problems = _dns1123_subdomain(prefix)
        if prefix_problems:
            return [f"prefix part {problem}" for problem in prefix_problems]
    else:
        return [
            f"a qualified name {_QUALIFIED_NAME_MSG} with an optional DNS subdomain prefix and '/' "
            "(e.g. 'example.com/MyName')"
        ]
    if not name:
        return ["name part must be non-empty"]
    problems = []
    if len(name) > _QUALIFIED_NAME_MAX:
        problems.append(f"name part must be no more than {_QUALIFIED_NAME_MAX} characters")
    if not _QUALIFIED_NAME.fullmatch(name):
        problems.append(f"name part {_QUALIFIED_NAME_MSG}")
    return problems


def _label_value(value: str) -> list[str]:
    problems = []
    if len(value) > _LABEL_VALUE_MAX:
        problems.append(f"must be no more than {_LABEL_VALUE_MAX} characters")
    if not _LABEL_VALUE.fullmatch(value):
        problems.append(_LABEL_VALUE_MSG)
    return problems


def _iana_svc_name(value: str) -> list[str]:
    """Named ports (IANA_SVC_NAME, RFC 6335): what probes and targetPort may refer to."""
    problems = []
    if len(value) > _IANA_SVC_NAME_MAX:
        problems.append(f"must be no more than {_IANA_SVC_NAME_MAX} characters")
    if not _IANA_SVC_NAME_CHARS.fullmatch(value):
        problems.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        problems.append("must not contain consecutive hyphens")
    if not _HAS_LETTER.search(value):
        problems.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        problems.append("must not begin or end with a hyphen")
    return problems


def _check(errors: _Errors, path: str, value: str, rule: Callable[[str], list[str]]) -> None:
    for problem in rule(value):
        errors.invalid(path, value, problem)


# ---------------------------------------------------------------- shared pieces

_PORT_RANGE_MSG = "must be between 1 and 65535, inclusive"
_PROTOCOLS = ("TCP", "UDP")
_ANNOTATIONS_MAX_BYTES = 256 * 1024


def _port_number(errors: _Errors, path: str, port: int) -> None:
    if not 1 <= port <= 65535:
        errors.invalid(path, port, _PORT_RANGE_MSG)


def _labels(errors: _Errors, path: str, labels: Mapping[str, str]) -> None:
    for key, value in labels.items():
        _check(errors, path, key, _qualified_name)
        _check(errors, path, value, _label_value)


def _annotations(errors: _Errors, path: str, annotations: Mapping[str, str]) -> None:
    total = 0
    for key, value in annotations.items():
        # Kubernetes checks annotation keys case-insensitively.
        for problem in _qualified_name(key.lower()):
            errors.invalid(path, key, problem)
        total += len(key.encode()) + len(value.encode())
    if total > _ANNOTATIONS_MAX_BYTES:
        errors.too_long(path, _ANNOTATIONS_MAX_BYTES)


def _int_or_string_port(errors: _Errors, path: str, value: pb.IntOrString, *, required: bool) -> None:
    """A port given as a number or as the name of a container port."""
    which = value.WhichOneof("value")
    if which is None or (which == "str_val" and not value.str_val):
        if required:
            errors.required(path)
        return
    if which == "int_val":
        _port_number(errors, path, value.int_val)
    else:
        _check(errors, path, value.str_val, _iana_svc_name)


def _object_meta(
    errors: _Errors,
    meta: pb.ObjectMeta,
    *,
    namespaced: bool,
    name_rule: Callable[[str], list[str]],
) -> None:
    if not meta.name:
        errors.required("metadata.name", "name or generateName is required")
    else:
        _check(errors, "metadata.name", meta.name, name_rule)
    if meta.generate_name:
        # A prefix may end in '-' (the generated suffix follows), so judge it with a stand-in suffix.
        for problem in name_rule(meta.generate_name.rstrip("-") + "a"):
            errors.invalid("metadata.generateName", meta.generate_name, problem)
    if namespaced:
        if not meta.namespace:
            errors.required("metadata.namespace")
        else:
            _check(errors, "metadata.namespace", meta.namespace, _dns1123_label)
    elif meta.namespace:
        errors.forbidden("metadata.namespace", "not allowed on this type")
    _labels(errors, "metadata.labels", meta.labels)
    _annotations(errors, "metadata.annotations", meta.annotations)
    controllers = 0
    for i, owner in enumerate(meta.owner_references):
        path = f"metadata.ownerReferences[{i}]"
        for field, value in (
            ("apiVersion", owner.api_version),
            ("kind", owner.kind),
            ("name", owner.name),
            ("uid", owner.uid),
        ):
            if not value:
                errors.required(f"{path}.{field}")
        controllers += owner.controller
    if controllers > 1:
        errors.invalid("metadata.ownerReferences", controllers, "Only one reference can have Controller set to true")
    for i, finalizer in enumerate(meta.finalizers):
        _check(errors, f"metadata.finalizers[{i}]", finalizer, _qualified_name)
    errors.non_negative("metadata.generation", meta.generation)
    errors.non_negative("metadata.deletionGracePeriodSeconds", meta.deletion_grace_period_seconds)


def _object_meta_update(errors: _Errors, meta: pb.ObjectMeta, old: pb.ObjectMeta) -> None:
    if meta.name != old.name:
        errors.invalid("metadata.name", meta.name, "field is immutable")
    if meta.namespace != old.namespace:
        errors.invalid("metadata.namespace", meta.namespace, "field is immutable")
    # An update that leaves uid out keeps the stored one; only a different uid is a change.
    if meta.uid and old.uid and meta.uid != old.uid:
        errors.invalid("metadata.uid", meta.uid, "field is immutable")


def _type_meta(errors: _Errors, obj: Any, *, kind: str, api_version: str) -> None:
    if obj.kind and obj.kind != kind:
        errors.unsupported("kind", obj.kind, (kind,))
    if obj.api_version and obj.api_version != api_version:
        errors.unsupported("apiVersion", obj.api_version, (api_version,))


# ---------------------------------------------------------------- label selectors

_SELECTOR_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


def _selector_is_empty(selector: pb.LabelSelector) -> bool:
    return not selector.match_labels and not selector.match_expressions


def _label_selector(errors: _Errors, path: str, selector: pb.LabelSelector) -> None:
    _labels(errors, f"{path}.matchLabels", selector.match_labels)
    for i, requirement in enumerate(selector.match_expressions):
        req_path = f"{path}.matchExpressions[{i}]"
        if not requirement.key:
            errors.required(f"{req_path}.key")
        else:
            _check(errors, f"{req_path}.key", requirement.key, _qualified_name)
        if requirement.operator in ("In", "NotIn"):
            if not requirement.values:
                errors.required(f"{req_path}.values", "must be specified when `operator` is 'In' or 'NotIn'")
        elif requirement.operator in ("Exists", "DoesNotExist"):
            if requirement.values:
                errors.forbidden(
                    f"{req_path}.values", "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                )
        else:
            errors.enum(f"{req_path}.operator", requirement.operator, _SELECTOR_OPERATORS, allow_empty=False)
        for j, value in enumerate(requirement.values):
            _check(errors, f"{req_path}.values[{j}]", value, _label_value)


def _selector_matches(selector: pb.LabelSelector, labels: Mapping[str, str]) -> bool:
    for key, value in selector.match_labels.items():
        if labels.get(key) != value:
            return False
    for requirement in selector.match_expressions:
        present = requirement.key in labels
        if requirement.operator == "In":
            matched = present and labels[requirement.key] in requirement.values
        elif requirement.operator == "NotIn":
            matched = not present or labels[requirement.key] not in requirement.values
        elif requirement.operator == "Exists":
            matched = present
        elif requirement.operator == "DoesNotExist":
            matched = not present
        else:  # already reported as unsupported
            matched = False
        if not matched:
            return False
    return True


def _selector_for_display(selector: pb.LabelSelector) -> dict[str, object]:
    shown: dict[str, object] = {}
    if selector.match_labels:
        shown["matchLabels"] = dict(selector.match_labels)
    if selector.match_expressions:
        shown["matchExpressions"] = [
            {"key": r.key, "operator": r.operator, "values": list(r.values)} for r in selector.match_expressions
        ]
    return shown


# ---------------------------------------------------------------- pods

_RESTART_POLICIES = ("Always", "OnFailure", "Never")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_RESOURCE_NAMES = ("cpu", "memory")
_TOLERATION_OPERATORS = ("Equal", "Exists")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_HTTP_SCHEMES = ("HTTP", "HTTPS")
_POD_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")


def _image(errors: _Errors, path: str, image: str) -> None:
    if not image:
        errors.required(path)
        return
    match = _IMAGE_REFERENCE.fullmatch(image)
    if match is None:
        errors.invalid(path, image, _IMAGE_MSG)
    elif len(match["name"]) > _IMAGE_NAME_MAX:
        errors.invalid(path, image, f"repository name must not be more than {_IMAGE_NAME_MAX} characters")


def _resources(errors: _Errors, path: str, resources: pb.ResourceRequirements) -> None:
    parsed: dict[str, dict[str, Decimal]] = {}
    for section, values in (("requests", resources.requests), ("limits", resources.limits)):
        parsed[section] = {}
        for name, text in values.items():
            item_path = f"{path}.{section}[{name}]"
            if name not in _RESOURCE_NAMES:
                errors.unsupported(item_path, name, _RESOURCE_NAMES)
                continue
            try:
                quantity = parse_quantity(text)
            except QuantityError as exc:
                errors.invalid(item_path, text, str(exc))
                continue
            if quantity < 0:
                errors.invalid(item_path, text, "must be greater than or equal to 0")
                continue
            parsed[section][name] = quantity
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is not None and request > limit:
            errors.invalid(
                f"{path}.requests[{name}]",
                resources.requests[name],
                f"must be less than or equal to {name} limit of {resources.limits[name]}",
            )


def _probe(errors: _Errors, path: str, probe: pb.Probe, *, liveness: bool) -> None:
    handlers = [field for field in ("exec", "http_get", "tcp_socket") if probe.HasField(field)]
    if not handlers:
        errors.required(path, "must specify a handler type")
    for extra in handlers[1:]:
        errors.forbidden(f"{path}.{_CAMEL[extra]}", "may not specify more than 1 handler type")
    if probe.HasField("exec") and not probe.exec.command:
        errors.required(f"{path}.exec.command")
    if probe.HasField("http_get"):
        _int_or_string_port(errors, f"{path}.httpGet.port", probe.http_get.port, required=True)
        errors.enum(f"{path}.httpGet.scheme", probe.http_get.scheme, _HTTP_SCHEMES)
    if probe.HasField("tcp_socket"):
        _int_or_string_port(errors, f"{path}.tcpSocket.port", probe.tcp_socket.port, required=True)
    for field in (
        "initial_delay_seconds",
        "period_seconds",
        "timeout_seconds",
        "success_threshold",
        "failure_threshold",
    ):
        errors.non_negative(f"{path}.{_CAMEL[field]}", getattr(probe, field))
    # Kubernetes: a liveness probe that needs several successes would keep killing a recovering container.
    if liveness and probe.success_threshold not in (0, 1):
        errors.invalid(f"{path}.successThreshold", probe.success_threshold, "must be 1")


_CAMEL = {
    "exec": "exec",
    "http_get": "httpGet",
    "tcp_socket": "tcpSocket",
    "initial_delay_seconds": "initialDelaySeconds",
    "period_seconds": "periodSeconds",
    "timeout_seconds": "timeoutSeconds",
    "success_threshold": "successThreshold",
    "failure_threshold": "failureThreshold",
}


def _container(errors: _Errors, path: str, container: pb.Container, port_names: set[str]) -> None:
    if not container.name:
        errors.required(f"{path}.name")
    else:
        _check(errors, f"{path}.name", container.name, _dns1123_label)
    _image(errors, f"{path}.image", container.image)
    errors.enum(f"{path}.imagePullPolicy", container.image_pull_policy, _PULL_POLICIES)
    for i, port in enumerate(container.ports):
        port_path = f"{path}.ports[{i}]"
        if port.name:
            _check(errors, f"{port_path}.name", port.name, _iana_svc_name)
            if port.name in port_names:
                errors.duplicate(f"{port_path}.name", port.name)
            port_names.add(port.name)
        if port.container_port == 0:
            errors.required(f"{port_path}.containerPort")
        else:
            _port_number(errors, f"{port_path}.containerPort", port.container_port)
        if port.host_port != 0:
            _port_number(errors, f"{port_path}.hostPort", port.host_port)
        errors.enum(f"{port_path}.protocol", port.protocol, _PROTOCOLS)
    for i, env in enumerate(container.env):
        env_path = f"{path}.env[{i}].name"
        if not env.name:
            errors.required(env_path)
        elif not _ENV_VAR_NAME.fullmatch(env.name):
            errors.invalid(env_path, env.name, _ENV_VAR_NAME_MSG)
    if container.HasField("resources"):
        _resources(errors, f"{path}.resources", container.resources)
    if container.HasField("liveness_probe"):
        _probe(errors, f"{path}.livenessProbe", container.liveness_probe, liveness=True)
    if container.HasField("readiness_probe"):
        _probe(errors, f"{path}.readinessProbe", container.readiness_probe, liveness=False)


def _toleration(errors: _Errors, path: str, toleration: pb.Toleration) -> None:
    operator = toleration.operator or "Equal"
    if toleration.key:
        _check(errors, f"{path}.key", toleration.key, _qualified_name)
    elif operator == "Equal":
        errors.invalid(
            f"{path}.operator",
            operator,
            'operator must be Exists when `key` is empty, which means "match all values and all keys"',
        )
    if toleration.operator and toleration.operator not in _TOLERATION_OPERATORS:
        errors.unsupported(f"{path}.operator", toleration.operator, _TOLERATION_OPERATORS)
    elif operator == "Exists" and toleration.value:
        errors.invalid(f"{path}.operator", toleration.value, "value must be empty when `operator` is 'Exists'")
    elif operator == "Equal":
        _check(errors, f"{path}.value", toleration.value, _label_value)
    errors.enum(f"{path}.effect", toleration.effect, _TAINT_EFFECTS)
    if toleration.has_toleration_seconds and toleration.effect != "NoExecute":
        errors.invalid(
            f"{path}.effect", toleration.effect, "effect must be 'NoExecute' when `tolerationSeconds` is set"
        )


def _pod_spec(errors: _Errors, path: str, spec: pb.PodSpec) -> None:
    if not spec.containers:
        errors.required(f"{path}.containers")
    container_names: set[str] = set()
    port_names: set[str] = set()
    for i, container in enumerate(spec.containers):
        container_path = f"{path}.containers[{i}]"
        if container.name:
            if container.name in container_names:
                errors.duplicate(f"{container_path}.name", container.name)
            container_names.add(container.name)
        _container(errors, container_path, container, port_names)
    errors.enum(f"{path}.restartPolicy", spec.restart_policy, _RESTART_POLICIES)
    errors.non_negative(f"{path}.terminationGracePeriodSeconds", spec.termination_grace_period_seconds)
    for i, toleration in enumerate(spec.tolerations):
        _toleration(errors, f"{path}.tolerations[{i}]", toleration)
    _labels(errors, f"{path}.nodeSelector", spec.node_selector)
    if spec.node_name:
        _check(errors, f"{path}.nodeName", spec.node_name, _dns1123_subdomain)
    if spec.hostname:
        _check(errors, f"{path}.hostname", spec.hostname, _dns1123_label)


def _validate_pod(errors: _Errors, pod: pb.Pod, old: pb.Pod | None) -> None:
    _pod_spec(errors, "spec", pod.spec)
    errors.enum("status.phase", pod.status.phase, _POD_PHASES)


# ---------------------------------------------------------------- replica sets and deployments

_STRATEGY_TYPES = ("RollingUpdate", "Recreate")


def _pod_template(errors: _Errors, path: str, template: pb.PodTemplateSpec, selector: pb.LabelSelector) -> None:
    labels = template.metadata.labels
    _labels(errors, f"{path}.metadata.labels", labels)
    _annotations(errors, f"{path}.metadata.annotations", template.metadata.annotations)
    if not _selector_is_empty(selector) and not _selector_matches(selector, labels):
        errors.invalid(f"{path}.metadata.labels", dict(labels), "selector does not match template labels")
    _pod_spec(errors, f"{path}.spec", template.spec)
    # A controller replaces pods that exit; a pod that may stay exited would be replaced forever.
    if template.spec.restart_policy not in ("", "Always"):
        errors.unsupported(f"{path}.spec.restartPolicy", template.spec.restart_policy, ("Always",))


def _replicated(errors: _Errors, spec: pb.ReplicaSetSpec | pb.DeploymentSpec) -> None:
    """What ReplicaSets and Deployments share: replicas, selector, template, minReadySeconds."""
    if spec.HasField("replicas"):
        errors.non_negative("spec.replicas", spec.replicas)
    if _selector_is_empty(spec.selector):
        errors.required("spec.selector")
    else:
        _label_selector(errors, "spec.selector", spec.selector)
    _pod_template(errors, "spec.template", spec.template, spec.selector)
    errors.non_negative("spec.minReadySeconds", spec.min_ready_seconds)


def _selector_update(errors: _Errors, spec: Any, old_spec: Any) -> None:
    if spec.selector != old_spec.selector:
        errors.invalid("spec.selector", _selector_for_display(spec.selector), "field is immutable")


def _validate_replica_set(errors: _Errors, replica_set: pb.ReplicaSet, old: pb.ReplicaSet | None) -> None:
    _replicated(errors, replica_set.spec)
    if old is not None:
        _selector_update(errors, replica_set.spec, old.spec)


def _int_or_percent(errors: _Errors, path: str, value: pb.IntOrString) -> bool | None:
    """A maxSurge/maxUnavailable value; returns whether it is zero, None when unset or invalid."""
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "int_val":
        if value.int_val < 0:
            errors.invalid(path, value.int_val, "must be greater than or equal to 0")
            return None
        return value.int_val == 0
    text = value.str_val
    if not _PERCENT.fullmatch(text):
        errors.invalid(path, text, _PERCENT_MSG)
        return None
    percent = int(text[:-1])
    if percent > 100:
        errors.invalid(path, text, "must not be greater than 100%")
        return None
    return percent == 0


def _strategy(errors: _Errors, strategy: pb.DeploymentStrategy) -> None:
    errors.enum("spec.strategy.type", strategy.type, _STRATEGY_TYPES)
    if not strategy.HasField("rolling_update"):
        return
    if strategy.type == "Recreate":
        errors.forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")
        return
    path = "spec.strategy.rollingUpdate"
    surge_zero = _int_or_percent(errors, f"{path}.maxSurge", strategy.rolling_update.max_surge)
    unavailable_zero = _int_or_percent(errors, f"{path}.maxUnavailable", strategy.rolling_update.max_unavailable)
    if surge_zero and unavailable_zero:
        errors.invalid(
            f"{path}.maxUnavailable",
            _int_or_string_display(strategy.rolling_update.max_unavailable),
            "may not be 0 when `maxSurge` is 0",
        )


def _int_or_string_display(value: pb.IntOrString) -> int | str:
    return value.int_val if value.WhichOneof("value") == "int_val" else value.str_val


def _validate_deployment(errors: _Errors, deployment: pb.Deployment, old: pb.Deployment | None) -> None:
    spec = deployment.spec
    _replicated(errors, spec)
    _strategy(errors, spec.strategy)
    if spec.HasField("revision_history_limit"):
        errors.non_negative("spec.revisionHistoryLimit", spec.revision_history_limit)
    if spec.HasField("progress_deadline_seconds") and spec.progress_deadline_seconds <= spec.min_ready_seconds:
        errors.invalid(
            "spec.progressDeadlineSeconds",
            spec.progress_deadline_seconds,
            "must be greater than minReadySeconds",
        )
    if old is not None:
        _selector_update(errors, spec, old.spec)


# ---------------------------------------------------------------- services and endpoints

_SERVICE_TYPES = ("ClusterIP", "NodePort")
_SESSION_AFFINITIES = ("None", "ClientIP")
_NODE_PORT_MIN, _NODE_PORT_MAX = 30000, 32767


def _ip_address(errors: _Errors, path: str, address: str) -> None:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        errors.invalid(path, address, "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")


def _validate_service(errors: _Errors, service: pb.Service, old: pb.Service | None) -> None:
    spec = service.spec
    errors.enum("spec.type", spec.type, _SERVICE_TYPES)
    errors.enum("spec.sessionAffinity", spec.session_affinity, _SESSION_AFFINITIES)
    if not spec.ports:
        errors.required("spec.ports")
    port_names: set[str] = set()
    port_keys: set[tuple[int, str]] = set()
    node_ports: set[tuple[int, str]] = set()
    for i, port in enumerate(spec.ports):
        path = f"spec.ports[{i}]"
        protocol = port.protocol or "TCP"
        if not port.name:
            if len(spec.ports) > 1:
                errors.required(f"{path}.name")
        else:
            _check(errors, f"{path}.name", port.name, _dns1123_label)
            if port.name in port_names:
                errors.duplicate(f"{path}.name", port.name)
            port_names.add(port.name)
        _port_number(errors, f"{path}.port", port.port)
        if (port.port, protocol) in port_keys:
            errors.duplicate(path, f"{port.port}/{protocol}")
        port_keys.add((port.port, protocol))
        errors.enum(f"{path}.protocol", port.protocol, _PROTOCOLS)
        _int_or_string_port(errors, f"{path}.targetPort", port.target_port, required=False)
        if port.node_port != 0:
            if spec.type != "NodePort":
                errors.forbidden(f"{path}.nodePort", f"may not be used when `type` is '{spec.type or 'ClusterIP'}'")
            elif not _NODE_PORT_MIN <= port.node_port <= _NODE_PORT_MAX:
                errors.invalid(
                    f"{path}.nodePort",
                    port.node_port,
                    "provided port is not in the valid range. "
                    f"The range of valid ports is {_NODE_PORT_MIN}-{_NODE_PORT_MAX}",
                )
            elif (port.node_port, protocol) in node_ports:
                errors.duplicate(f"{path}.nodePort", port.node_port)
            node_ports.add((port.node_port, protocol))
    _labels(errors, "spec.selector", spec.selector)
    if spec.cluster_ip and spec.cluster_ip != "None":
        _ip_address(errors, "spec.clusterIP", spec.cluster_ip)
    # The server allocates clusterIP once; an update must carry the stored value (copy it when the
    # client left it empty, as Kubernetes' patchAllocatedValues does) or the proxy would lose the service.
    if old is not None and old.spec.cluster_ip and spec.cluster_ip != old.spec.cluster_ip:
        errors.invalid("spec.clusterIP", spec.cluster_ip, "field is immutable")


def _validate_endpoints(errors: _Errors, endpoints: pb.Endpoints, old: pb.Endpoints | None) -> None:
    for i, subset in enumerate(endpoints.subsets):
        path = f"subsets[{i}]"
        for field, addresses in (
            ("addresses", subset.addresses),
            ("notReadyAddresses", subset.not_ready_addresses),
        ):
            for j, address in enumerate(addresses):
                _ip_address(errors, f"{path}.{field}[{j}].ip", address.ip)
        for j, port in enumerate(subset.ports):
            port_path = f"{path}.ports[{j}]"
            if port.name:
                _check(errors, f"{port_path}.name", port.name, _dns1123_label)
            _port_number(errors, f"{port_path}.port", port.port)
            errors.enum(f"{port_path}.protocol", port.protocol, _PROTOCOLS)


# ---------------------------------------------------------------- nodes and events

_EVENT_TYPES = ("Normal", "Warning")


def _validate_node(errors: _Errors, node: pb.Node, old: pb.Node | None) -> None:
    seen: set[tuple[str, str]] = set()
    for i, taint in enumerate(node.spec.taints):
        path = f"spec.taints[{i}]"
        if not taint.key:
            errors.required(f"{path}.key")
        else:
            _check(errors, f"{path}.key", taint.key, _qualified_name)
        _check(errors, f"{path}.value", taint.value, _label_value)
        errors.enum(f"{path}.effect", taint.effect, _TAINT_EFFECTS, allow_empty=False)
        if (taint.key, taint.effect) in seen:
            errors.duplicate(path, f"{taint.key}:{taint.effect}")
        seen.add((taint.key, taint.effect))
    if node.spec.pod_cidr:
        try:
            ipaddress.ip_network(node.spec.pod_cidr)
        except ValueError:
            errors.invalid("spec.podCIDR", node.spec.pod_cidr, "must be a valid CIDR (e.g. 10.244.1.0/24)")
    for section, values in (("capacity", node.status.capacity), ("allocatable", node.status.allocatable)):
        for name, text in values.items():
            try:
                parse_quantity(text)
            except QuantityError as exc:
                errors.invalid(f"status.{section}[{name}]", text, str(exc))


def _validate_event(errors: _Errors, event: pb.Event, old: pb.Event | None) -> None:
    if not event.involved_object.kind:
        errors.required("involvedObject.kind")
    if not event.involved_object.name:
        errors.required("involvedObject.name")
    errors.enum("type", event.type, _EVENT_TYPES)
    errors.non_negative("count", event.count)


# ---------------------------------------------------------------- entry point

_NAME_RULES: dict[type[Message], Callable[[str], list[str]]] = {pb.Service: _dns1035_label}

_VALIDATORS: dict[type[Message], Callable[[_Errors, Any, Any], None]] = {
    pb.Pod: _validate_pod,
    pb.ReplicaSet: _validate_replica_set,
    pb.Deployment: _validate_deployment,
    pb.Service: _validate_service,
    pb.Endpoints: _validate_endpoints,
    pb.Node: _validate_node,
    pb.Event: _validate_event,
}


def validate(obj: Message, *, old: Message | None = None) -> None:
    """Refuse an object that breaks Kubernetes' rules; `old` is the stored version on update."""
    kind = kind_of(obj)
    if old is not None and type(old) is not type(obj):
        raise TypeError(f"old is a {type(old).__name__}, not a {type(obj).__name__}")
    errors = _Errors()
    _type_meta(errors, obj, kind=kind.kind, api_version=kind.api_version)
    _object_meta(
        errors,
        obj.metadata,
        namespaced=kind.namespaced,
        name_rule=_NAME_RULES.get(type(obj), _dns1123_subdomain),
    )
    if old is not None:
        _object_meta_update(errors, obj.metadata, old.metadata)
    _VALIDATORS[type(obj)](errors, obj, old)
    if errors:
        group = kind.api_version.rpartition("/")[0]
        raise ValidationError(kind=kind.kind, group=group, name=obj.metadata.name, errors=errors)
