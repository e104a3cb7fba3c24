"""Kybernetes benchmarks: one command per benchmark, each printing a table and writing JSON.

    python -m bench.control_plane   # etcd + kyb-master + hollow Nodes: scheduling, API/watch latency, memory
    python -m bench.pod_startup     # one real Node on containerd: 1 pod and 30 pods vs. plain ctr + CNI
    python -m bench.failover        # 3 real Nodes, 6 replicas, one kubelet SIGKILLed
    python -m bench.convergence     # 50 → 100 replicas and rolling updates on one Node, vs. ctr + CNI
    python -m bench.run_all         # all of the above with their defaults

Every benchmark starts its own processes (etcd, kyb-master, kubelets, a private containerd) in a work
directory of its own, on free loopback ports, and stops them by pid. Figures are medians with min/max
over `--runs`; latencies within one run are p50/p99. Benchmarks assert nothing: they measure.
"""
