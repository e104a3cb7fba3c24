"""The ReplicaSet controller's per-pod facts: read once per pod version, recomputed when the object changes."""

from __future__ import annotations

from kybernetes.master.controllers.replicaset.podfacts import PodFactsCache
from kybernetes.proto import objects_pb2 as pb


def _pod(*, ready: bool, phase: str = "Running", owner: str = "rs-uid") -> pb.Pod:
    pod = pb.Pod()
    pod.metadata.name, pod.metadata.namespace = "web-abcde", "default"
    pod.metadata.labels["app"] = "web"
    if owner:
        pod.metadata.owner_references.add(kind="ReplicaSet", name="web", uid=owner, controller=True)
    pod.status.phase = phase
    cond = pod.status.conditions.add(type="Ready", status="True" if ready else "False")
    cond.last_transition_time.seconds = 1000
    return pod


def test_facts_follow_the_informers_object_and_not_a_stale_copy():
    cache = PodFactsCache()
    first = _pod(ready=False)
    facts = cache.get("default/web-abcde", first)
    assert (facts.active, facts.controller_uid, facts.labels, facts.ready_since) == (True, "rs-uid", {"app": "web"},
                                                                                     None)
    assert cache.get("default/web-abcde", first) is facts  # same object: not read again
    ready = _pod(ready=True)  # the informer replaced the object: the facts are taken anew
    assert cache.get("default/web-abcde", ready).ready_since == 1000.0
    done = _pod(ready=False, phase="Succeeded", owner="")
    facts = cache.get("default/web-abcde", done)
    assert (facts.active, facts.controller_uid) == (False, "")
    cache.forget("default/web-abcde")
    assert len(cache) == 0
