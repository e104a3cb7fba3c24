"""Label and field selector parsing and matching, against Kubernetes' semantics."""

from __future__ import annotations

import pytest

from kybernetes.core.api import selectors
from kybernetes.core.api.selectors import (
    FieldRequirement,
    LabelSelector,
    Operator,
    SelectorError,
    from_labels,
    from_proto,
    label_key_error,
    label_value_error,
    parse_field_selector,
    parse_label_selector,
    to_string,
)
from kybernetes.proto import objects_pb2 as pb

# ---------------------------------------------------------------- label selector parsing


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("   ", ""),
        ("app=web", "app=web"),
        ("app==web", "app=web"),
        ("app = web", "app=web"),
        ("tier!=db", "tier!=db"),
        ("env in (b,a)", "env in (a,b)"),
        ("env notin ( a , b, a )", "env notin (a,b)"),
        ("key", "key"),
        ("!key", "!key"),
        ("app=", "app="),
        ("z=1,a=2,!m,k in (x)", "a=2,k in (x),!m,z=1"),
        ("example.com/app=web", "example.com/app=web"),
        ("env in (a,)", "env in (,a)"),
    ],
)
def test_parse_canonical_string(text: str, canonical: str) -> None:
    assert str(parse_label_selector(text)) == canonical


def test_parse_requirements_structure() -> None:
    sel = parse_label_selector("env in (prod,dev),!gone,app=web")
    assert sel.requirements == (
        selectors.Requirement("app", Operator.EQUALS, ("web",)),
        selectors.Requirement("env", Operator.IN, ("dev", "prod")),
        selectors.Requirement("gone", Operator.DOES_NOT_EXIST, ()),
    )


def test_canonical_string_round_trips() -> None:
    sel = parse_label_selector("b notin (y,x),a,!c,d!=e,f=g")
    assert parse_label_selector(str(sel)) == sel


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("app web", "found 'web', expected: '=', '!=', '==', 'in', 'notin'"),
        ("app=web,", "identifier after ','"),
        (",app=web", "found ',', expected: !, identifier, or 'end of string'"),
        ("app=web tier=db", "found 'tier', expected: ',' or 'end of string'"),
        ("env in a,b", "found 'a', expected: '('"),
        ("env in (a b)", "found 'b', expected: ',' or ')'"),
        ("env in ()", "values set can't be empty"),
        ("env in (a", "found '', expected: ',' or ')'"),
        ("!", "identifier after '!'"),
        ("!=x", "found '!=', expected: !, identifier"),
        ("app=(web)", "found '(', expected: identifier"),
        ("count>1", "operator '>' is not supported"),
        ("-bad=x", 'invalid label key "-bad"'),
        ("Example.com/app=x", 'invalid label key "Example.com/app"'),
        ("/app=x", "prefix part must be non-empty"),
        ("app=-web", 'invalid label value "-web"'),
        ("app=" + "v" * 64, "must be no more than 63 characters"),
    ],
)
def test_parse_errors(text: str, fragment: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_label_selector(text)
    message = str(info.value)
    assert message.startswith("unable to parse requirement: ")
    assert fragment in message


def test_selector_error_is_value_error() -> None:
    assert issubclass(SelectorError, ValueError)


def test_label_key_and_value_rules() -> None:
    assert label_key_error("app.kubernetes.io/name") is None
    assert label_key_error("a" * 63) is None
    assert "no more than 63" in (label_key_error("a" * 64) or "")
    assert "name part must be non-empty" in (label_key_error("example.com/") or "")
    assert label_value_error("") is None
    assert label_value_error("v1.2_3-x") is None
    assert "empty string or" in (label_value_error("has space") or "")


# ---------------------------------------------------------------- label selector matching

LABELS = {"app": "web", "tier": "frontend", "env": "prod"}


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ("app=web", LABELS, True),
        ("app=db", LABELS, False),
        ("app=web", {}, False),
        ("app==web,tier=frontend", LABELS, True),
        ("app=web,tier=backend", LABELS, False),
        ("tier!=db", LABELS, True),
        ("tier!=frontend", LABELS, False),
        ("missing!=x", LABELS, True),  # != matches objects without the key
        ("env in (prod,dev)", LABELS, True),
        ("env in (dev)", LABELS, False),
        ("missing in (x)", LABELS, False),
        ("env notin (dev,qa)", LABELS, True),
        ("env notin (prod)", LABELS, False),
        ("missing notin (x)", LABELS, True),  # notin matches a missing key, as in Kubernetes
        ("app", LABELS, True),
        ("missing", LABELS, False),
        ("!missing", LABELS, True),
        ("!app", LABELS, False),
        ("app=", {"app": ""}, True),
        ("app=", {}, False),
        ("", LABELS, True),
        ("", {}, True),
    ],
)
def test_matches(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(text).matches(labels) is expected


def test_empty_selector_matches_everything() -> None:
    sel = parse_label_selector("")
    assert sel.is_empty()
    assert sel == selectors.EVERYTHING == LabelSelector()
    assert sel.matches({}) and sel.matches(LABELS)
    assert not parse_label_selector("a").is_empty()


def test_matches_protobuf_label_map() -> None:
    pod = pb.Pod()
    pod.metadata.labels.update(LABELS)
    assert parse_label_selector("app=web,env notin (dev),!gone").matches(pod.metadata.labels)
    assert not parse_label_selector("app=web,gone").matches(pod.metadata.labels)


def test_requirement_matches_alone() -> None:
    (req,) = parse_label_selector("env in (prod)").requirements
    assert req.matches(LABELS)
    assert not req.matches({})


def test_selector_is_immutable_and_hashable() -> None:
    sel = parse_label_selector("a=b,c")
    with pytest.raises(AttributeError):
        sel.requirements = ()  # type: ignore[misc]
    assert hash(sel) == hash(parse_label_selector("c,a==b"))
    assert len({sel, parse_label_selector("c,a=b")}) == 1


# ---------------------------------------------------------------- proto selectors


def test_from_proto_match_labels_and_expressions() -> None:
    sel = pb.LabelSelector(
        match_labels={"app": "web"},
        match_expressions=[
            pb.LabelSelectorRequirement(key="env", operator="In", values=["prod", "qa"]),
            pb.LabelSelectorRequirement(key="tier", operator="NotIn", values=["db"]),
            pb.LabelSelectorRequirement(key="app", operator="Exists"),
            pb.LabelSelectorRequirement(key="legacy", operator="DoesNotExist"),
        ],
    )
    compiled = from_proto(sel)
    assert str(compiled) == "app=web,app,env in (prod,qa),!legacy,tier notin (db)"
    assert to_string(sel) == str(compiled)
    assert compiled.matches(LABELS)
    assert not compiled.matches({**LABELS, "legacy": "1"})
    assert not compiled.matches({**LABELS, "env": "dev"})


def test_from_proto_empty_matches_everything() -> None:
    compiled = from_proto(pb.LabelSelector())
    assert compiled.is_empty()
    assert compiled.matches({"x": "y"})
    assert to_string(pb.LabelSelector()) == ""


@pytest.mark.parametrize(
    ("requirement", "fragment"),
    [
        (pb.LabelSelectorRequirement(key="a", operator="Gt", values=["1"]), "matchExpressions[0].operator"),
        (pb.LabelSelectorRequirement(key="a", operator="in", values=["1"]), '"in" is not a valid'),
        (pb.LabelSelectorRequirement(key="a", operator="In"), "values set can't be empty"),
        (pb.LabelSelectorRequirement(key="a", operator="Exists", values=["x"]), "values set must be empty"),
        (pb.LabelSelectorRequirement(key="bad key", operator="Exists"), 'invalid label key "bad key"'),
    ],
)
def test_from_proto_errors(requirement: pb.LabelSelectorRequirement, fragment: str) -> None:
    with pytest.raises(SelectorError) as info:
        from_proto(pb.LabelSelector(match_expressions=[requirement]))
    assert fragment in str(info.value)


def test_from_labels() -> None:
    sel = from_labels({"tier": "web", "app": "shop"})
    assert str(sel) == "app=shop,tier=web"
    assert sel.matches({"app": "shop", "tier": "web", "x": "y"})
    assert not sel.matches({"app": "shop"})
    assert from_labels({}).is_empty()


# ---------------------------------------------------------------- field selectors


def _pod(*, name: str = "p1", namespace: str = "default", node: str = "", phase: str = "") -> pb.Pod:
    pod = pb.Pod()
    pod.metadata.name = name
    pod.metadata.namespace = namespace
    pod.spec.node_name = node
    pod.status.phase = phase
    return pod


def test_field_selector_parse_and_requirements() -> None:
    sel = parse_field_selector("status.phase!=Failed,spec.nodeName==n1")
    assert sel.requirements == (
        FieldRequirement("spec.nodeName", "=", "n1"),
        FieldRequirement("status.phase", "!=", "Failed"),
    )
    assert str(sel) == "spec.nodeName=n1,status.phase!=Failed"
    assert sel.equals("spec.nodeName") == "n1"
    assert sel.equals("status.phase") is None
    assert sel.equals("metadata.name") is None


@pytest.mark.parametrize(
    ("text", "pod", "expected"),
    [
        ("metadata.name=p1", _pod(), True),
        ("metadata.name=p2", _pod(), False),
        ("metadata.namespace=default,metadata.name=p1", _pod(), True),
        ("metadata.namespace!=default", _pod(), False),
        ("spec.nodeName=n1", _pod(node="n1"), True),
        ("spec.nodeName=", _pod(), True),  # unscheduled pods
        ("spec.nodeName!=", _pod(), False),
        ("spec.nodeName!=", _pod(node="n1"), True),
        ("status.phase=Running", _pod(phase="Running"), True),
        ("status.phase!=Running", _pod(phase="Running"), False),
        ("status.phase!=Succeeded,status.phase!=Failed", _pod(phase="Running"), True),
        ("", _pod(), True),
    ],
)
def test_field_selector_matches_pods(text: str, pod: pb.Pod, expected: bool) -> None:
    assert parse_field_selector(text).matches(pod) is expected


def test_field_selector_objects_without_the_field_see_empty_string() -> None:
    node = pb.Node()
    node.metadata.name = "n1"
    event = pb.Event()
    event.metadata.name = "ev"
    service = pb.Service()
    assert parse_field_selector("spec.nodeName=").matches(node)
    assert not parse_field_selector("spec.nodeName=n1").matches(node)
    assert parse_field_selector("status.phase=,spec.nodeName=").matches(event)
    assert parse_field_selector("status.phase!=Running").matches(service)
    assert parse_field_selector("metadata.name=n1").matches(node)
    node.status.phase = "Running"  # NodeStatus does have a phase
    assert parse_field_selector("status.phase=Running").matches(node)


def test_field_selector_matches_envelope() -> None:
    envelope = pb.Object(pod=_pod(node="n2"))
    assert parse_field_selector("spec.nodeName=n2").matches(envelope)
    assert not parse_field_selector("spec.nodeName=n1").matches(envelope)
    assert not parse_field_selector("").matches(pb.Object())


def test_field_selector_escapes() -> None:
    sel = parse_field_selector(r"metadata.name=a\,b\=c\\d")
    assert sel.requirements == (FieldRequirement("metadata.name", "=", "a,b=c\\d"),)
    assert str(sel) == r"metadata.name=a\,b\=c\\d"
    assert sel.matches(_pod(name="a,b=c\\d"))


def test_field_selector_empty() -> None:
    sel = parse_field_selector("")
    assert sel.is_empty()
    assert sel.matches(_pod())
    assert not parse_field_selector("metadata.name=x").is_empty()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("spec.foo=x", "field label not supported: spec.foo"),
        ("metadata.labels=x", "field label not supported: metadata.labels"),
        ("metadata.name", "invalid selector: 'metadata.name'; can't understand 'metadata.name'"),
        ("metadata.name=a=b", "unescaped '='"),
        ("metadata.name=a\\x", "invalid escape sequence"),
        ("metadata.name=a\\", "invalid escape sequence"),
    ],
)
def test_field_selector_errors(text: str, message: str) -> None:
    with pytest.raises(SelectorError) as info:
        parse_field_selector(text)
    assert message in str(info.value)
