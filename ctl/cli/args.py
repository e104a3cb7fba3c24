"""KIND/NAME arguments as kubectl reads them: kind names and aliases (`po`, `deploy`, `all`), `TYPE NAME...`
and `TYPE/NAME` forms into `Target`s, the names kubectl prints for kinds and objects, and client-side
selector checks (a typo is a usage error before any call).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kybernetes.core.api import kinds
from kybernetes.core.api.kinds import ApiObject, Kind
from kybernetes.ctl.cli.errors import one_line, usage_error

if TYPE_CHECKING:
    pass


# kubectl's `all` category, restricted to the kinds we have.
ALL_CATEGORY: tuple[str, ...] = ("pods", "services", "deployments", "replicasets")




def resolve_kind(name: str) -> Kind:
    """The kind for a user-typed resource name (`deploy`, `deployments.apps`, …).

    Unknown names are `error: the server doesn't have a resource type "x"`.
    """
    base, dot, group_name = name.partition(".")
    try:
        kind = kinds.lookup(base if dot else name)
    except kinds.UnknownKind:
        kind = None
    if kind is None or (dot and api_group(kind) != group_name):
        raise usage_error(f'the server doesn\'t have a resource type "{name}"')
    return kind


def api_group(kind: Kind) -> str:
    """"apps" for apps/v1, "" for the core group."""
    group_name, _, _ = kind.api_version.rpartition("/")
    return group_name


def type_name(kind: Kind) -> str:
    """kubectl's type prefix: `pod`, `deployment.apps`."""
    group_name = api_group(kind)
    singular = kind.singular or kind.kind.lower()
    return f"{singular}.{group_name}" if group_name else singular


def resource_name(kind: Kind) -> str:
    """kubectl's plural resource name with its group: `pods`, `deployments.apps`."""
    group_name = api_group(kind)
    return f"{kind.resource}.{group_name}" if group_name else kind.resource


def object_ref(obj: ApiObject) -> str:
    """`pod/web`, `deployment.apps/web` (kubectl's -o name and messages)."""
    return f"{type_name(kinds.kind_of(obj))}/{obj.metadata.name}"


@dataclass(frozen=True, slots=True)
class Target:
    """One named object on the command line; namespace "" means the -n default."""

    kind: Kind
    name: str
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class ResourceArgs:
    """`KIND[,KIND…] [NAME…]` or `KIND/NAME…`: the kinds named and the explicit objects, if any."""

    kinds: tuple[Kind, ...]
    targets: tuple[Target, ...]


def _kinds_of(spec: str, *, allow_all: bool) -> list[Kind]:
    out: list[Kind] = []
    for part in spec.split(","):
        if not part:
            raise usage_error(f'invalid resource type "{spec}"')
        names = ALL_CATEGORY if allow_all and part == "all" else (part,)
        for name in names:
            kind = resolve_kind(name)
            if kind not in out:
                out.append(kind)
    return out


def parse_resource_args(args: Sequence[str], *, allow_all: bool = False) -> ResourceArgs:
    """Parse kubectl's resource arguments (see ResourceArgs); raises CliError on mixed forms."""
    if not args:
        return ResourceArgs((), ())
    if "/" in args[0]:
        targets: list[Target] = []
        for arg in args:
            kind_name, slash, name = arg.partition("/")
            if not slash or not kind_name or not name or "/" in name:
                raise usage_error(f'arguments in resource/name form must have a single resource and name: "{arg}"')
            targets.append(Target(resolve_kind(kind_name), name))
        seen: list[Kind] = []
        for t in targets:
            if t.kind not in seen:
                seen.append(t.kind)
        return ResourceArgs(tuple(seen), tuple(targets))
    kind_list = _kinds_of(args[0], allow_all=allow_all)
    names = list(args[1:])
    for name in names:
        if "/" in name:
            raise usage_error("there is no need to specify a resource type as a separate argument when passing "
                              "arguments in resource/name form (e.g. 'kybctl get resource/<resource_name>' "
                              "instead of 'kybctl get resource resource/<resource_name>')")
    return ResourceArgs(tuple(kind_list), tuple(Target(k, n) for k in kind_list for n in names))


def check_selector(selector: str, *, field: bool = False) -> None:
    """Parse a label (or field) selector client-side, so that a typo is a usage error."""
    from kybernetes.core.api.selectors import SelectorError, parse_field_selector, parse_label_selector

    try:
        (parse_field_selector if field else parse_label_selector)(selector)
    except SelectorError as err:
        raise usage_error(one_line(str(err))) from None
