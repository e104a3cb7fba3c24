"""The CA sealed for storage in etcd, so that a second master can take it (k3s keeps its bootstrap data so).

The sealing key is derived from the server token with scrypt (n=2^15, r=8, p=1: ~50 ms and 32 MiB on our
machines, per guess for whoever steals etcd's data) and a random salt; the CA's certificate and key are
encrypted together with AES-256-GCM, the format name and salt bound in as associated data. Whoever has etcd
but not the server token learns nothing of the CA key; a wrong token is an error, never a wrong CA.

Layout (all in one bytes value): b"KYBCA1" | 16-byte salt | 12-byte nonce | ciphertext+tag.
"""

from __future__ import annotations

import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from kybernetes.master.pki.authority import ClusterAuthority

MAGIC = b"KYBCA1"
_SALT, _NONCE = 16, 12


class BundleError(ValueError):
    """A sealed CA that cannot be opened: not ours, damaged, or sealed with another token."""


def _key(server_token: str, salt: bytes) -> bytes:
    if not server_token:
        raise BundleError("server token: Required value: the CA is sealed with it")
    return Scrypt(salt=salt, length=32, n=2 ** 15, r=8, p=1).derive(server_token.encode())


def seal(authority: ClusterAuthority, *, server_token: str) -> bytes:
    """The CA's certificate and key, encrypted with a key derived from `server_token`."""
    salt, nonce = os.urandom(_SALT), os.urandom(_NONCE)
    plain = json.dumps({"certificate": authority.certificate_pem.decode(), "key": authority.key_pem.decode()})
    sealed = AESGCM(_key(server_token, salt)).encrypt(nonce, plain.encode(), MAGIC + salt)
    return MAGIC + salt + nonce + sealed


def open_sealed(data: bytes, *, server_token: str) -> ClusterAuthority:
    """The CA from `seal`'s output; BundleError when it is not one or the token is not the one it was sealed with."""
    if not data.startswith(MAGIC) or len(data) < len(MAGIC) + _SALT + _NONCE + 16:
        raise BundleError("ca bundle: not a sealed Kybernetes CA")
    salt = data[len(MAGIC):len(MAGIC) + _SALT]
    nonce = data[len(MAGIC) + _SALT:len(MAGIC) + _SALT + _NONCE]
    try:
        plain = AESGCM(_key(server_token, salt)).decrypt(nonce, data[len(MAGIC) + _SALT + _NONCE:], MAGIC + salt)
    except InvalidTag:
        raise BundleError("ca bundle: cannot be opened with this server token (another cluster's token?)") from None
    fields = json.loads(plain)
    return ClusterAuthority.load(certificate_pem_bytes=fields["certificate"].encode(),
                                 key_pem_bytes=fields["key"].encode())
