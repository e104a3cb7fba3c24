"""The ReplicaSet controller: keeps `replicas` pods matching a selector."""
