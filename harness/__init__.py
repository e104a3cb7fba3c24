"""The processes and helpers that run a real cluster for the tests and the benchmarks.

Real children, started and stopped by pid, on free loopback ports and in private directories: etcd (from
kybernetes.master.store.embedded), containerd and a registry with the test images, `kyb-master` and
`kyb-kubelet` processes, the namespace lab; plus waiting with a deadline (`harness.waiting.until`) and
object builders (`harness.builders`).

* `ports`: free loopback ports.
* `waiting`: `until`, the one poll-until-true-or-fail helper.
* `builders`: `make_pod`, the one pod builder.
* `system`: running a command, pids, cross-process file locks (what the modules below share).
* `host`: the host's safety net: blackhole routes for the pod and service ranges, reserved pod /24s.
* `containerd`: a private containerd daemon and one test's slice of it (namespace, bridge, subnet).
* `registry`: a private plain-http registry, the test images built and pushed to it.
* `master`: a `kyb-master` process (and one whose Node gets a reserved pod /24).
* `kubelet`: a `kyb-kubelet` process, and a whole node (master + kubelet + containerd slice + client).
* `lab`: the namespace lab (deploy/lab/lab.sh) and the sample app run on it.

Both tests/ (whose pytest fixtures in tests/fixtures/ wrap these) and bench/ use this package. It is not
part of the installed wheel (run it from the repository root), and it never imports tests/ or bench/.
"""
