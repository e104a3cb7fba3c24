"""Conversion between Kubernetes-shaped dicts (YAML/JSON manifests) and our protobuf objects.

We walk the message descriptors ourselves instead of using json_format, because
manifests need Kubernetes' rules that proto JSON lacks:
  * error messages carry Kubernetes field paths (`spec.template.spec.containers[0].image`)
    and every problem in a document is reported, not only the first;
  * Kubernetes spells acronyms in capitals (podIP, clusterIP, containerID, podCIDR);
  * IntOrString is a plain int or string, not a message;
  * Toleration.tolerationSeconds is presence-tracked through has_toleration_seconds;
  * quantities (resources, capacity) may be YAML numbers and become strings;
  * int64 fields are JSON numbers and timestamps RFC3339 strings.
Per-message conversion plans are built once per descriptor and cached.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any, cast

import yaml
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from kybernetes.core.api import kinds
from kybernetes.core.api.errors import InvalidError
from kybernetes.core.api.kinds import ApiObject
from kybernetes.proto import objects_pb2 as pb


class ManifestError(InvalidError, ValueError):
    """A manifest that cannot become an object; `errors` lists every problem found."""

    def __init__(self, errors: str | Sequence[str]) -> None:
        self.errors: list[str] = [errors] if isinstance(errors, str) else list(errors)
        super().__init__(", ".join(self.errors))


def _message_of(field: FieldDescriptor) -> Descriptor:
    """The message type of a message field (protobuf types it as optional: only message fields have one)."""
    message = field.message_type
    if message is None:
        raise TypeError(f"{field.full_name} is not a message field")
    return message


# Kubernetes capitalises these words when they are not the first of a name.
_ACRONYMS = {"ip": "IP", "ips": "IPs", "id": "ID", "cidr": "CIDR", "url": "URL", "uuid": "UUID"}

# Maps whose values are resource quantities, which YAML may give as numbers.
_QUANTITY_MAPS = frozenset(
    {
        "kyb.v1.ResourceRequirements.requests",
        "kyb.v1.ResourceRequirements.limits",
        "kyb.v1.NodeStatus.capacity",
        "kyb.v1.NodeStatus.allocatable",
    }
)
# Derived bookkeeping fields that never appear in manifests.
_HIDDEN_FIELDS = frozenset({"kyb.v1.Toleration.has_toleration_seconds"})
_TOLERATION_SECONDS = "kyb.v1.Toleration.toleration_seconds"
_INT_OR_STRING = pb.IntOrString.DESCRIPTOR.full_name
_TIMESTAMP = Timestamp.DESCRIPTOR.full_name

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: ("int32", -(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: ("int64", -(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: ("uint32", 0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: ("uint32", 0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: ("uint64", 0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: ("uint64", 0, 2**64 - 1),
}
_FLOAT_TYPES = frozenset({FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT})


def json_name(field: FieldDescriptor) -> str:
    """Kubernetes' spelling of a proto field: pod_ip -> podIP, api_version -> apiVersion."""
    first, *rest = field.name.split("_")
    return first + "".join(_ACRONYMS.get(word, word.capitalize()) for word in rest)


def _describe(value: object) -> str:
    """A JSON-ish description of a value for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {json.dumps(value)}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"string {json.dumps(shown)}"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    return type(value).__name__


_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key_path(path: str, key: str) -> str:
    if _SIMPLE_KEY.fullmatch(key):
        return f"{path}.{key}" if path else key
    return f"{path}[{key}]"


# ---------------------------------------------------------------- dict -> proto

_Errors = list[str]


@dataclass(frozen=True, slots=True)
class _FieldPlan:
    field: FieldDescriptor
    key: str  # the Kubernetes (JSON) name
    kind: str  # "scalar", "timestamp", "int_or_string", "message", "map"
    repeated: bool


@cache
def _plan(descriptor: Descriptor) -> dict[str, _FieldPlan]:
    plans: dict[str, _FieldPlan] = {}
    for field in descriptor.fields:
        if field.full_name in _HIDDEN_FIELDS:
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            message = _message_of(field)
            if message.GetOptions().map_entry:
                kind = "map"
            elif message.full_name == _TIMESTAMP:
                kind = "timestamp"
            elif message.full_name == _INT_OR_STRING:
                kind = "int_or_string"
            else:
                kind = "message"
            repeated = field.is_repeated and kind != "map"
        elif (
            field.type in _INT_RANGES
            or field.type in _FLOAT_TYPES
            or field.type in (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BOOL)
        ):
            kind = "scalar"
            repeated = field.is_repeated
        else:
            raise TypeError(f"manifest conversion does not support the type of {field.full_name}")
        plan = _FieldPlan(field, json_name(field), kind, repeated)
        plans[plan.key] = plan
    return plans


def _scalar(field: FieldDescriptor, value: object, path: str, errors: _Errors) -> object | None:
    """The Python value for a scalar field, or None after recording an error."""
    field_type = field.type
    if field_type == FieldDescriptor.TYPE_STRING:
        if isinstance(value, str):
            return value
        errors.append(f"{path}: expected string, got {_describe(value)}")
        return None
    if field_type == FieldDescriptor.TYPE_BOOL:
        if isinstance(value, bool):
            return value
        errors.append(f"{path}: expected boolean, got {_describe(value)}")
        return None
    if field_type in _FLOAT_TYPES:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        errors.append(f"{path}: expected number, got {_describe(value)}")
        return None
    type_name, low, high = _INT_RANGES[field_type]
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON numbers such as 3.0 are integers to Kubernetes too
    if not isinstance(value, int) or isinstance(value, bool):
        errors.append(f"{path}: expected integer, got {_describe(value)}")
        return None
    if not low <= value <= high:
        errors.append(f"{path}: {value} is out of range for {type_name}")
        return None
    return value


def _quantity(value: object, path: str, errors: _Errors) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return str(int(value)) if value.is_integer() else repr(value)
    errors.append(f"{path}: expected quantity (string or number), got {_describe(value)}")
    return None


def _timestamp(value: object, path: str, errors: _Errors) -> Timestamp | None:
    stamp = Timestamp()
    if isinstance(value, dt.datetime):
        # Naive datetimes from YAML are UTC, as YAML's timestamp type defines.
        stamp.FromDatetime(value if value.tzinfo else value.replace(tzinfo=dt.UTC))
        return stamp
    if isinstance(value, str):
        try:
            stamp.FromJsonString(value)
        except ValueError:
            errors.append(f'{path}: expected RFC3339 timestamp such as "2026-11-28T04:21:06Z", got "{value}"')
            return None
        return stamp
    errors.append(f"{path}: expected RFC3339 timestamp string, got {_describe(value)}")
    return None


def _int_or_string(value: object, path: str, errors: _Errors) -> pb.IntOrString | None:
    if isinstance(value, str):
        return pb.IntOrString(str_val=value)
    if isinstance(value, int) and not isinstance(value, bool):
        if -(2**31) <= value < 2**31:
            return pb.IntOrString(int_val=value)
        errors.append(f"{path}: {value} is out of range for int32")
        return None
    errors.append(f"{path}: expected integer or string, got {_describe(value)}")
    return None


def _fill(msg: Message, data: object, path: str, errors: _Errors) -> None:
    """Set the fields of `msg` from a mapping, recording problems with their paths."""
    if not isinstance(data, Mapping):
        errors.append(f"{path or '<document>'}: expected object, got {_describe(data)}")
        return
    plans = _plan(msg.DESCRIPTOR)
    for key, value in data.items():
        if not isinstance(key, str):
            errors.append(f"{path or '<document>'}: field names must be strings, got {_describe(key)}")
            continue
        field_path = f"{path}.{key}" if path else key
        plan = plans.get(key)
        if plan is None:
            errors.append(f'unknown field "{field_path}"')
            continue
        if value is None:  # `null` means unset, as in Kubernetes
            continue
        if plan.repeated:
            if not isinstance(value, list | tuple):
                errors.append(f"{field_path}: expected array, got {_describe(value)}")
                continue
            for index, item in enumerate(value):
                _fill_one(msg, plan, item, f"{field_path}[{index}]", errors)
        else:
            _fill_one(msg, plan, value, field_path, errors)


def _fill_one(msg: Message, plan: _FieldPlan, value: object, path: str, errors: _Errors) -> None:
    """Set one value (or append one element when the field is repeated)."""
    field = plan.field
    name = field.name
    if plan.kind == "message":
        if plan.repeated:
            child = getattr(msg, name).add()
        else:
            child = getattr(msg, name)
            child.SetInParent()  # `spec: {}` is present, as proto presence goes
        _fill(child, value, path, errors)
        return
    if plan.kind == "map":
        _fill_map(getattr(msg, name), field, value, path, errors)
        return
    converted: object | None
    if plan.kind == "timestamp":
        converted = _timestamp(value, path, errors)
    elif plan.kind == "int_or_string":
        converted = _int_or_string(value, path, errors)
    else:
        converted = _scalar(field, value, path, errors)
    if converted is None:
        return
    if plan.repeated:
        target = getattr(msg, name)
        if isinstance(converted, Message):
            target.add().CopyFrom(converted)
        else:
            target.append(converted)
    elif isinstance(converted, Message):
        getattr(msg, name).CopyFrom(converted)
    else:
        setattr(msg, name, converted)
        if field.full_name == _TOLERATION_SECONDS:
            msg.has_toleration_seconds = True  # type: ignore[attr-defined]


def _fill_map(target: Any, field: FieldDescriptor, value: object, path: str, errors: _Errors) -> None:
    if not isinstance(value, Mapping):
        errors.append(f"{path}: expected object, got {_describe(value)}")
        return
    value_field = _message_of(field).fields_by_name["value"]
    if value_field.type != FieldDescriptor.TYPE_STRING:
        raise TypeError(f"manifest conversion supports only map<string, string>, not {field.full_name}")
    quantities = field.full_name in _QUANTITY_MAPS
    for key, item in value.items():
        if not isinstance(key, str):
            errors.append(f"{path}: keys must be strings, got {_describe(key)}")
            continue
        item_path = _key_path(path, key)
        if quantities:
            converted = _quantity(item, item_path, errors)
        elif isinstance(item, str):
            converted = item
        else:
            # Like kubectl: `version: 2` must be quoted, we do not guess a spelling.
            errors.append(f"{item_path}: expected string, got {_describe(item)}")
            converted = None
        if converted is not None:
            target[key] = converted


def kind_for(doc: Mapping[str, Any]) -> kinds.Kind:
    """The registry row for a manifest's apiVersion + kind; ManifestError if none matches."""
    api_version = doc.get("apiVersion")
    kind_name = doc.get("kind")
    if not isinstance(kind_name, str) or not kind_name:
        raise ManifestError("kind not set")
    if not isinstance(api_version, str) or not api_version:
        raise ManifestError(f'apiVersion not set for kind "{kind_name}"')
    kind = kinds.BY_KIND.get(kind_name)
    if kind is None or kind.api_version != api_version:
        raise ManifestError(f'no matches for kind "{kind_name}" in version "{api_version}"')
    return kind


def to_proto(doc: Mapping[str, Any]) -> ApiObject:
    """Convert a manifest dict to its concrete object (pb.Deployment, …).

    Raises ManifestError listing every unknown field, wrong type and bad value with its path.
    """
    if not isinstance(doc, Mapping):
        raise ManifestError(f"<document>: expected object, got {_describe(doc)}")
    kind = kind_for(doc)
    obj = kind.message()
    errors: _Errors = []
    _fill(cast(Message, obj), doc, "", errors)  # every kind's message is a protobuf Message
    if errors:
        raise ManifestError(errors)
    return obj


# ---------------------------------------------------------------- proto -> dict

_ToDict = Callable[[Any], Any]


def _timestamp_to_json(stamp: Timestamp) -> str:
    return stamp.ToJsonString()


def _int_or_string_to_json(value: pb.IntOrString) -> int | str | None:
    which = value.WhichOneof("value")
    return None if which is None else getattr(value, which)


def _identity(value: Any) -> Any:
    return value


@cache
def _emitter(field: FieldDescriptor) -> tuple[str, _ToDict]:
    """The JSON key of a field and how to turn its (non-repeated) value into JSON."""
    key = json_name(field)
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return key, _identity
    message = _message_of(field)
    if message.GetOptions().map_entry:
        return key, lambda value: {k: value[k] for k in sorted(value)}
    if message.full_name == _TIMESTAMP:
        return key, _timestamp_to_json
    if message.full_name == _INT_OR_STRING:
        return key, _int_or_string_to_json
    return key, _message_to_dict


def _message_to_dict(msg: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for field, value in msg.ListFields():
        if field.full_name in _HIDDEN_FIELDS:
            continue
        if field.full_name == _TOLERATION_SECONDS:
            continue  # emitted below, by has_toleration_seconds rather than by value
        key, convert = _emitter(field)
        if field.is_repeated and not (
            field.type == FieldDescriptor.TYPE_MESSAGE and _message_of(field).GetOptions().map_entry
        ):
            out[key] = [convert(item) for item in value]
            continue
        converted = convert(value)
        if converted is not None:
            out[key] = converted
    if isinstance(msg, pb.Toleration) and msg.has_toleration_seconds:
        out["tolerationSeconds"] = msg.toleration_seconds
    return out


def to_dict(obj: Message | ApiObject) -> dict[str, Any]:
    """The Kubernetes-shaped dict of a concrete object (or an envelope), as kubectl prints it.

    apiVersion and kind come first (from the kind registry), then the other fields in
    declaration order; fields at their default are omitted, `optional` fields and oneof
    members are printed whenever they are set.
    """
    if isinstance(obj, pb.Object):
        obj = kinds.unwrap(obj)
    kind = kinds.kind_of(obj)
    out: dict[str, Any] = {"apiVersion": kind.api_version, "kind": kind.kind}
    for key, value in _message_to_dict(cast(Message, obj)).items():
        if key not in out:
            out[key] = value
    return out


def list_to_dict(objs: Sequence[Message], resource_version: str = "") -> dict[str, Any]:
    """A `kind: List` document, as `kubectl get -o yaml` prints several objects."""
    return {
        "apiVersion": "v1",
        "kind": "List",
        "items": [to_dict(obj) for obj in objs],
        "metadata": {"resourceVersion": resource_version},
    }


# ---------------------------------------------------------------- documents


class _Loader(yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader):  # type: ignore[misc]
    """Safe YAML without the timestamp type: Kubernetes' YAML keeps `2026-01-02` a string."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _is_list_kind(doc: Mapping[str, Any]) -> bool:
    kind = doc.get("kind")
    if not isinstance(kind, str):
        return False
    return kind == "List" or (kind.endswith("List") and kind.removesuffix("List") in kinds.BY_KIND)


def _expand(doc: object, where: str, out: list[dict[str, Any]]) -> None:
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise ManifestError(f"{where}: expected an object, got {_describe(doc)}")
    if not _is_list_kind(doc):
        out.append(doc)
        return
    items = doc.get("items") or []
    if not isinstance(items, list):
        raise ManifestError(f"{where}.items: expected array, got {_describe(items)}")
    for index, item in enumerate(items):
        _expand(item, f"{where}.items[{index}]", out)


def _parse_json_stream(text: str) -> list[object] | None:
    """Concatenated JSON values, or None when the text is not JSON (then it is YAML)."""
    decoder = json.JSONDecoder()
    docs: list[object] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return docs
        try:
            doc, pos = decoder.raw_decode(text, pos)
        except json.JSONDecodeError:
            return None
        docs.append(doc)


def load_documents(text: str) -> list[dict[str, Any]]:
    """Parse a multi-document YAML (or JSON) stream into manifest dicts.

    Empty documents are skipped and `kind: List` documents are replaced by their items.
    Raises ManifestError with the line number on YAML syntax errors.
    """
    docs: list[object] | None = None
    if text.lstrip().startswith("{"):
        docs = _parse_json_stream(text)
    if docs is None:
        try:
            docs = list(yaml.load_all(text, Loader=_Loader))
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
            problem = exc.problem or exc.context or "invalid YAML"
            raise ManifestError(f"error parsing YAML at {where}: {problem}") from exc
        except yaml.YAMLError as exc:
            raise ManifestError(f"error parsing YAML: {exc}") from exc
    out: list[dict[str, Any]] = []
    for index, doc in enumerate(docs):
        _expand(doc, f"document {index + 1}", out)
    return out
