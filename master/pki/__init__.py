"""The cluster's certificate authority (import name `kybernetes.master.pki`).

- `authority`: make the cluster CA, issue the master's serving certificate (SANs: every address and name
  it is reached by) and client certificates (CN = user, O = groups), and sign a joining Node's request with
  the identity the master decides, never the one the request asks for.
- `bundle`: the CA's key and certificate sealed with a key derived from the server token, so the CA can
  live in etcd where a second master finds it (k3s keeps its bootstrap data the same way) without etcd
  ever holding the CA key in the clear.

Design and the remaining wiring: docs/identity.md.
"""
