"""Identity shared by every side of a cluster (import name `kybernetes.core.identity`).

- `tokens`: join tokens, `KYB1<ca hash>::<id>.<secret>`: what a new Node (or master) is given to join. The
  CA hash lets the joiner verify the master before it sends anything; the id and secret authenticate it.
- `certs`: the x509 pieces both sides need: the CA hash of a certificate, a new key and certificate request
  for an identity (CN = user or `system:node:<name>`, O = groups), reading the identity of a certificate.

The certificate authority itself (making the CA, signing) is the master's: `kybernetes.master.pki`.

Design and the remaining wiring: docs/identity.md.
"""
