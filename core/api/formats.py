"""Kubernetes' syntax rules for names, keys and values, with Kubernetes' messages.

These are the rules of `k8s.io/apimachinery/pkg/util/validation` that more than
one layer needs: the API server's admission validation judges object fields with
them, and selector parsing (server side and in kybctl) judges label keys and
values with them, so a bad key reads the same wherever it is caught. Each rule
is defined once here: one compiled regex, one length limit, one message.

Every public function takes the string to judge and returns the list of
problems, empty when the string is valid. A problem is the text after
`Invalid value: "VALUE": ` in a Kubernetes error, worded exactly as Kubernetes
words it (double spaces in the examples included) so users can search for it.
The patterns are compiled once at import: validation runs on every write and
selectors are parsed on every list and watch.

IP addresses are here too, because a node acts on them: `endpoint_ip` is the rule
for an address a Service proxy may send traffic to (Kubernetes' `ValidateEndpointIP`,
IPv4 only, as the proxy and the pod network are), judged by the API server on
every Endpoints write and again by each proxy before a rule is written, so an
address the API would refuse never reaches `iptables-restore`.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = [
    "dns1035_label",
    "dns1123_label",
    "dns1123_subdomain",
    "endpoint_ip",
    "env_var_name",
    "iana_svc_name",
    "image_reference",
    "ipv4_address",
    "label_value",
    "parse_ipv4",
    "percent",
    "qualified_name",
]

# ---------------------------------------------------------------- DNS names

_DNS1123_LABEL_FMT = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_LABEL_MAX = 63
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    f"regex used for validation is '{_DNS1123_LABEL_FMT}')"
)

_DNS1123_SUBDOMAIN_FMT = rf"{_DNS1123_LABEL_FMT}(\.{_DNS1123_LABEL_FMT})*"
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1123_SUBDOMAIN_MAX = 253
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'example.com', "
    f"regex used for validation is '{_DNS1123_SUBDOMAIN_FMT}')"
)

_DNS1035_LABEL_FMT = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_DNS1035_LABEL = re.compile(_DNS1035_LABEL_FMT)
_DNS1035_LABEL_MAX = 63
_DNS1035_LABEL_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', "
    f"regex used for validation is '{_DNS1035_LABEL_FMT}')"
)


def _max_len(limit: int) -> str:
    return f"must be no more than {limit} characters"


def _bounded(value: str, limit: int, pattern: re.Pattern[str], message: str) -> list[str]:
    """The common shape of a rule: a length limit, then a pattern, each reported on its own."""
    problems = []
    if len(value) > limit:
        problems.append(_max_len(limit))
    if not pattern.fullmatch(value):
        problems.append(message)
    return problems


def dns1123_label(value: str) -> list[str]:
    """A lowercase RFC 1123 label (namespaces, container and port names): at most 63 characters."""
    return _bounded(value, _DNS1123_LABEL_MAX, _DNS1123_LABEL, _DNS1123_LABEL_MSG)


def dns1123_subdomain(value: str) -> list[str]:
    """A lowercase RFC 1123 subdomain (most object names, key prefixes): at most 253 characters."""
    return _bounded(value, _DNS1123_SUBDOMAIN_MAX, _DNS1123_SUBDOMAIN, _DNS1123_SUBDOMAIN_MSG)


def dns1035_label(value: str) -> list[str]:
    """A DNS-1035 label (Service names): like an RFC 1123 label, but starting with a letter."""
    return _bounded(value, _DNS1035_LABEL_MAX, _DNS1035_LABEL, _DNS1035_LABEL_MSG)


# ---------------------------------------------------------------- label keys and values

_QUALIFIED_NAME_FMT = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QUALIFIED_NAME = re.compile(_QUALIFIED_NAME_FMT)
_QUALIFIED_NAME_MAX = 63
_QUALIFIED_NAME_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
    "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
    f"regex used for validation is '{_QUALIFIED_NAME_FMT}')"
)

_LABEL_VALUE_FMT = rf"({_QUALIFIED_NAME_FMT})?"
_LABEL_VALUE = re.compile(_LABEL_VALUE_FMT)
_LABEL_VALUE_MAX = 63
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', "
    f"regex used for validation is '{_LABEL_VALUE_FMT}')"
)


def qualified_name(value: str) -> list[str]:
    """Label/annotation keys, finalizers, taint keys: an optional DNS-subdomain prefix and '/', then a name.

    The name has at most 63 characters. A broken prefix or an empty part is reported alone.
    """
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        prefix_problems = dns1123_subdomain(prefix)
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
        problems.append(f"name part {_max_len(_QUALIFIED_NAME_MAX)}")
    if not _QUALIFIED_NAME.fullmatch(name):
        problems.append(f"name part {_QUALIFIED_NAME_MSG}")
    return problems


def label_value(value: str) -> list[str]:
    """A label value (also taint and toleration values): empty, or a name of at most 63 characters."""
    return _bounded(value, _LABEL_VALUE_MAX, _LABEL_VALUE, _LABEL_VALUE_MSG)


# ---------------------------------------------------------------- other fields

_IANA_SVC_NAME_MAX = 15
_IANA_SVC_NAME_CHARS = re.compile(r"[-a-z0-9]+")
_HAS_LETTER = re.compile(r"[a-z]")

_ENV_VAR_NAME_FMT = r"[-._a-zA-Z][-._a-zA-Z0-9]*"
_ENV_VAR_NAME = re.compile(_ENV_VAR_NAME_FMT)
_ENV_VAR_NAME_MSG = (
    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', "
    "and must not start with a digit (e.g. 'my.env-name',  or 'MY_ENV.NAME',  or 'MyEnvName1', "
    f"regex used for validation is '{_ENV_VAR_NAME_FMT}')"
)

_PERCENT_FMT = "[0-9]+%"
_PERCENT = re.compile(_PERCENT_FMT)
_PERCENT_MSG = (
    "a valid percent string must be a numeric string followed by an ending '%' "
    f"(e.g. '1%',  or '93%', regex used for validation is '{_PERCENT_FMT}')"
)

# Image references, after github.com/distribution/reference's grammar.
_IMAGE_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_IMAGE_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IMAGE_DOMAIN = rf"(?:{_IMAGE_DOMAIN_COMPONENT}(?:\.{_IMAGE_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_IMAGE_REFERENCE = re.compile(
    rf"(?P<name>(?:{_IMAGE_DOMAIN}/)?{_IMAGE_PATH_COMPONENT}(?:/{_IMAGE_PATH_COMPONENT})*)"
    r"(?::(?P<tag>[\w][\w.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?",
    re.ASCII,  # Go's \w, which the tag grammar is written in, is ASCII-only
)
_IMAGE_NAME_MAX = 255
_IMAGE_MSG = (
    "must be a valid image reference: [registry[:port]/]path[:tag][@sha256:digest] with lowercase path "
    "components, a tag matching '[\\w][\\w.-]{0,127}' and a 64-hex-digit sha256 digest"
)


def iana_svc_name(value: str) -> list[str]:
    """Named ports (IANA_SVC_NAME, RFC 6335): what probes and targetPort may refer to."""
    problems = []
    if len(value) > _IANA_SVC_NAME_MAX:
        problems.append(_max_len(_IANA_SVC_NAME_MAX))
    if not _IANA_SVC_NAME_CHARS.fullmatch(value):
        problems.append("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)")
    if "--" in value:
        problems.append("must not contain consecutive hyphens")
    if not _HAS_LETTER.search(value):
        problems.append("must contain at least one letter (a-z)")
    if value.startswith("-") or value.endswith("-"):
        problems.append("must not begin or end with a hyphen")
    return problems


def env_var_name(value: str) -> list[str]:
    """An environment variable name: letters, digits, '_', '-' and '.', not starting with a digit."""
    return [] if _ENV_VAR_NAME.fullmatch(value) else [_ENV_VAR_NAME_MSG]


def percent(value: str) -> list[str]:
    """A percent string such as '25%' (maxSurge, maxUnavailable); the range is the caller's rule."""
    return [] if _PERCENT.fullmatch(value) else [_PERCENT_MSG]


def image_reference(value: str) -> list[str]:
    """A container image reference: `[registry[:port]/]path[:tag][@sha256:digest]`, name at most 255 characters."""
    match = _IMAGE_REFERENCE.fullmatch(value)
    if match is None:
        return [_IMAGE_MSG]
    if len(match["name"]) > _IMAGE_NAME_MAX:
        return [f"repository name must not be more than {_IMAGE_NAME_MAX} characters"]
    return []


# ---------------------------------------------------------------- IP addresses

_IPV4_MSG = "must be a valid IPv4 address (e.g. 10.9.8.7)"
# Where traffic for a Service must never be sent: the node itself, the link (the metadata service at
# 169.254.169.254 among others), groups, and no address at all. Kubernetes' ValidateEndpointIP wording.
_ENDPOINT_FORBIDDEN = (
    (ipaddress.IPv4Network("0.0.0.0/32"), "may not be unspecified (0.0.0.0)"),
    (ipaddress.IPv4Network("127.0.0.0/8"), "may not be in the loopback range (127.0.0.0/8)"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "may not be in the link-local range (169.254.0.0/16)"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "may not be in the multicast range (224.0.0.0/4)"),
    (ipaddress.IPv4Network("255.255.255.255/32"), "may not be the broadcast address (255.255.255.255)"),
)


def parse_ipv4(value: str) -> ipaddress.IPv4Address | None:
    """The address in dotted-quad form (no leading zeros, no spaces, no prefix), or None."""
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        return None


def ipv4_address(value: str) -> list[str]:
    """An IPv4 address in dotted-quad form."""
    return [] if parse_ipv4(value) is not None else [_IPV4_MSG]


def endpoint_ip(value: str) -> list[str]:
    """An address a Service may send traffic to: IPv4 unicast, not loopback, link-local, multicast or unset."""
    address = parse_ipv4(value)
    if address is None:
        return [_IPV4_MSG]
    return [message for network, message in _ENDPOINT_FORBIDDEN if address in network]
