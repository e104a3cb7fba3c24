"""Workloads: ReplicaSets and Deployments.

Both carry replicas, a label selector and a pod template the selector must
match (the template's pod spec is validated as a pod's, by `pods`), and both
refuse a change of selector on update. A Deployment adds its rollout strategy
(maxSurge/maxUnavailable as a count or a percent, never both 0, only
maxUnavailable capped at 100%), revision
history limit and progress deadline. Whether the selector matches the template
labels is decided by the core labels module, the same matching the controllers
use.
"""

from __future__ import annotations

from typing import Any

from kybernetes.core.api import formats
from kybernetes.core.api.labels import from_proto
from kybernetes.master.api.validation.errors import Errors
from kybernetes.master.api.validation.meta import (
    selector_for_display,
    selector_is_empty,
    validate_annotations,
    validate_label_selector,
    validate_labels,
)
from kybernetes.master.api.validation.network import ClusterNetwork
from kybernetes.master.api.validation.pods import validate_pod_spec
from kybernetes.proto import objects_pb2 as pb

_STRATEGY_TYPES = ("RollingUpdate", "Recreate")


def _pod_template(errors: Errors, path: str, template: pb.PodTemplateSpec, selector: pb.LabelSelector, *,
                  network: ClusterNetwork) -> None:
    labels = template.metadata.labels
    validate_labels(errors, f"{path}.metadata.labels", labels)
    validate_annotations(errors, f"{path}.metadata.annotations", template.metadata.annotations)
    # Unchecked: a bad selector has its own errors (spec.selector...), and is still compared as written.
    if not from_proto(selector, check=False).matches(labels):
        errors.invalid(f"{path}.metadata.labels", dict(labels), "selector does not match template labels")
    validate_pod_spec(errors, f"{path}.spec", template.spec, network=network)
    # A controller replaces pods that exit; a pod that may stay exited would be replaced forever.
    if template.spec.restart_policy not in ("", "Always"):
        errors.unsupported(f"{path}.spec.restartPolicy", template.spec.restart_policy, ("Always",))


def _replicated(errors: Errors, spec: pb.ReplicaSetSpec | pb.DeploymentSpec, *, network: ClusterNetwork) -> None:
    """What ReplicaSets and Deployments share: replicas, selector, template, minReadySeconds."""
    if spec.HasField("replicas"):
        errors.non_negative("spec.replicas", spec.replicas)
    if selector_is_empty(spec.selector):
        errors.required("spec.selector")
    else:
        validate_label_selector(errors, "spec.selector", spec.selector)
    _pod_template(errors, "spec.template", spec.template, spec.selector, network=network)
    errors.non_negative("spec.minReadySeconds", spec.min_ready_seconds)


def _selector_update(errors: Errors, spec: Any, old_spec: Any) -> None:
    if spec.selector != old_spec.selector:
        errors.invalid("spec.selector", selector_for_display(spec.selector), "field is immutable")


def validate_replica_set(errors: Errors, replica_set: pb.ReplicaSet, old: pb.ReplicaSet | None, *,
                         network: ClusterNetwork) -> None:
    _replicated(errors, replica_set.spec, network=network)
    if old is not None:
        _selector_update(errors, replica_set.spec, old.spec)


def _int_or_percent(errors: Errors, path: str, value: pb.IntOrString, *, at_most_100: bool) -> bool | None:
    """A maxSurge/maxUnavailable value; returns whether it is zero, None when unset or invalid.

    Only maxUnavailable is capped at 100% (Kubernetes: a surge of 150% is a valid, fast rollout).
    """
    which = value.WhichOneof("value")
    if which is None:
        return None
    if which == "int_val":
        if value.int_val < 0:
            errors.invalid(path, value.int_val, "must be greater than or equal to 0")
            return None
        return value.int_val == 0
    text = value.str_val
    if not errors.check(path, text, formats.percent):
        return None
    percent = int(text[:-1])
    if at_most_100 and percent > 100:
        errors.invalid(path, text, "must not be greater than 100%")
        return None
    return percent == 0


def _strategy(errors: Errors, strategy: pb.DeploymentStrategy) -> None:
    errors.enum("spec.strategy.type", strategy.type, _STRATEGY_TYPES)
    if not strategy.HasField("rolling_update"):
        return
    if strategy.type == "Recreate":
        errors.forbidden("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'")
        return
    path = "spec.strategy.rollingUpdate"
    surge_zero = _int_or_percent(errors, f"{path}.maxSurge", strategy.rolling_update.max_surge, at_most_100=False)
    unavailable_zero = _int_or_percent(errors, f"{path}.maxUnavailable", strategy.rolling_update.max_unavailable,
                                       at_most_100=True)
    if surge_zero and unavailable_zero:
        errors.invalid(
            f"{path}.maxUnavailable",
            _int_or_string_display(strategy.rolling_update.max_unavailable),
            "may not be 0 when `maxSurge` is 0",
        )


def _int_or_string_display(value: pb.IntOrString) -> int | str:
    return value.int_val if value.WhichOneof("value") == "int_val" else value.str_val


def validate_deployment(errors: Errors, deployment: pb.Deployment, old: pb.Deployment | None, *,
                        network: ClusterNetwork) -> None:
    spec = deployment.spec
    _replicated(errors, spec, network=network)
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
