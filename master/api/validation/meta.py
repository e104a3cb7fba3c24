"""What every kind shares: type meta, object meta, labels, annotations, label selectors.

`validate_type_meta` checks kind and apiVersion against the kind's own;
`validate_object_meta` checks metadata on create and update (name by the
kind's name rule, namespace, labels, annotations, owner references,
finalizers) and `validate_object_meta_update` the fields an update may not
change. Label maps, annotation maps and the API form of a label selector
(`pb.LabelSelector`, as Kubernetes' `ValidateLabelSelector`) are checked here
for every kind that carries them, field by field, so each bad key, value or
operator gets its own error; what a selector matches is the core labels
module's business.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kybernetes.core.api import formats
from kybernetes.core.api.kinds import ApiObject
from kybernetes.core.api.labels import PROTO_OPERATORS
from kybernetes.master.api.validation.errors import Errors
from kybernetes.proto import objects_pb2 as pb

_ANNOTATIONS_MAX_BYTES = 256 * 1024
_SELECTOR_OPERATORS = tuple(PROTO_OPERATORS)  # In, NotIn, Exists, DoesNotExist


# ---------------------------------------------------------------- labels and annotations


def validate_labels(errors: Errors, path: str, labels: Mapping[str, str]) -> None:
    for key, value in labels.items():
        errors.check(path, key, formats.qualified_name)
        errors.check(path, value, formats.label_value)


def validate_annotations(errors: Errors, path: str, annotations: Mapping[str, str]) -> None:
    total = 0
    for key, value in annotations.items():
        # Kubernetes checks annotation keys case-insensitively.
        for problem in formats.qualified_name(key.lower()):
            errors.invalid(path, key, problem)
        total += len(key.encode()) + len(value.encode())
    if total > _ANNOTATIONS_MAX_BYTES:
        errors.too_long(path, _ANNOTATIONS_MAX_BYTES)


# ---------------------------------------------------------------- type and object meta


def validate_object_meta(
    errors: Errors,
    meta: pb.ObjectMeta,
    *,
    namespaced: bool,
    name_rule: Callable[[str], list[str]],
) -> None:
    if not meta.name:
        errors.required("metadata.name", "name or generateName is required")
    else:
        errors.check("metadata.name", meta.name, name_rule)
    if meta.generate_name:
        # A prefix may end in '-' (the generated suffix follows), so judge it with a stand-in suffix.
        for problem in name_rule(meta.generate_name.rstrip("-") + "a"):
            errors.invalid("metadata.generateName", meta.generate_name, problem)
    if namespaced:
        if not meta.namespace:
            errors.required("metadata.namespace")
        else:
            errors.check("metadata.namespace", meta.namespace, formats.dns1123_label)
    elif meta.namespace:
        errors.forbidden("metadata.namespace", "not allowed on this type")
    validate_labels(errors, "metadata.labels", meta.labels)
    validate_annotations(errors, "metadata.annotations", meta.annotations)
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
        errors.check(f"metadata.finalizers[{i}]", finalizer, formats.qualified_name)
    errors.non_negative("metadata.generation", meta.generation)
    errors.non_negative("metadata.deletionGracePeriodSeconds", meta.deletion_grace_period_seconds)


def validate_object_meta_update(errors: Errors, meta: pb.ObjectMeta, old: pb.ObjectMeta) -> None:
    if meta.name != old.name:
        errors.invalid("metadata.name", meta.name, "field is immutable")
    if meta.namespace != old.namespace:
        errors.invalid("metadata.namespace", meta.namespace, "field is immutable")
    # An update that leaves uid out keeps the stored one; only a different uid is a change.
    if meta.uid and old.uid and meta.uid != old.uid:
        errors.invalid("metadata.uid", meta.uid, "field is immutable")


def validate_type_meta(errors: Errors, obj: ApiObject, *, kind: str, api_version: str) -> None:
    if obj.kind and obj.kind != kind:
        errors.unsupported("kind", obj.kind, (kind,))
    if obj.api_version and obj.api_version != api_version:
        errors.unsupported("apiVersion", obj.api_version, (api_version,))


# ---------------------------------------------------------------- label selectors


def selector_is_empty(selector: pb.LabelSelector) -> bool:
    return not selector.match_labels and not selector.match_expressions


def validate_label_selector(errors: Errors, path: str, selector: pb.LabelSelector) -> None:
    validate_labels(errors, f"{path}.matchLabels", selector.match_labels)
    for i, requirement in enumerate(selector.match_expressions):
        req_path = f"{path}.matchExpressions[{i}]"
        if not requirement.key:
            errors.required(f"{req_path}.key")
        else:
            errors.check(f"{req_path}.key", requirement.key, formats.qualified_name)
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
            errors.check(f"{req_path}.values[{j}]", value, formats.label_value)


def selector_for_display(selector: pb.LabelSelector) -> dict[str, object]:
    """A selector as Kubernetes shows it in an error: its JSON form, empty fields left out."""
    shown: dict[str, object] = {}
    if selector.match_labels:
        shown["matchLabels"] = dict(selector.match_labels)
    if selector.match_expressions:
        shown["matchExpressions"] = [
            {"key": r.key, "operator": r.operator, "values": list(r.values)} for r in selector.match_expressions
        ]
    return shown
