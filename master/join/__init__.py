"""Joining the cluster with a token (import name `kybernetes.master.join`).

- `tokens`: join tokens in etcd (only a hash of each secret), their expiry and deletion.
- `service`: the Bootstrap service (token + certificate request -> a Node certificate), served alone on the
  bootstrap port, and the Tokens service (create, list, delete) on the API port.

Design: docs/identity.md.
"""
