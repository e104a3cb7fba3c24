"""Join tokens: `KYB1<ca hash>::<id>.<secret>`.

The form follows k3s' `K10<sha256>::<user>:<password>` and kubeadm's bootstrap tokens (`abcdef.0123456789abcdef`):

- `KYB1` names the format (version 1);
- the CA hash (`sha256:` dropped, 64 hex digits) lets the joiner verify the master's CA before it sends anything;
- the id (6 of `[a-z0-9]`) is public: it names the token in `kybctl token list` and in logs;
- the secret (16 of `[a-z0-9]`, ~82 bits) is never stored: the master keeps a hash of it.

Parsing names the part that is wrong and the rule it breaks; the secret is never echoed in an error.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string
from dataclasses import dataclass

PREFIX = "KYB1"
ID_LENGTH = 6
SECRET_LENGTH = 16
_ALPHABET = string.ascii_lowercase + string.digits
_HASH = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(rf"[a-z0-9]{{{ID_LENGTH}}}")
_SECRET = re.compile(rf"[a-z0-9]{{{SECRET_LENGTH}}}")


class TokenError(ValueError):
    """A token that is not of the form KYB1<ca hash>::<id>.<secret>."""


@dataclass(frozen=True, slots=True)
class JoinToken:
    ca_hash: str  # "sha256:<64 hex>"
    token_id: str
    secret: str

    def __str__(self) -> str:
        return f"{PREFIX}{self.ca_hash.removeprefix('sha256:')}::{self.token_id}.{self.secret}"

    def __repr__(self) -> str:  # never print the secret
        return f"JoinToken(ca_hash={self.ca_hash!r}, token_id={self.token_id!r}, secret=<hidden>)"

    @property
    def secret_hash(self) -> str:
        """What the master stores for this token: sha256 of id and secret."""
        return secret_hash(self.token_id, self.secret)


def secret_hash(token_id: str, secret: str) -> str:
    return hashlib.sha256(f"{token_id}.{secret}".encode()).hexdigest()


def secret_matches(token: JoinToken, stored_hash: str) -> bool:
    """Whether the token's secret is the one whose hash the master stored (constant-time)."""
    return hmac.compare_digest(token.secret_hash, stored_hash)


def generate(ca_hash: str) -> JoinToken:
    """A new token for the cluster whose CA has `ca_hash`."""
    if not (ca_hash.startswith("sha256:") and _HASH.fullmatch(ca_hash.removeprefix("sha256:"))):
        raise TokenError(f"ca hash: must be sha256:<64 lowercase hex digits>, got {ca_hash!r}")
    return JoinToken(ca_hash=ca_hash, token_id="".join(secrets.choice(_ALPHABET) for _ in range(ID_LENGTH)),
                     secret="".join(secrets.choice(_ALPHABET) for _ in range(SECRET_LENGTH)))


def parse(text: str) -> JoinToken:
    """A token from its text form; TokenError naming the part and the rule."""
    text = text.strip()
    if not text.startswith(PREFIX):
        raise TokenError(f"token: must start with {PREFIX} (a Kybernetes join token)")
    head, separator, credentials = text[len(PREFIX):].partition("::")
    if not separator:
        raise TokenError("token: must be KYB1<ca hash>::<id>.<secret>")
    if not _HASH.fullmatch(head):
        raise TokenError("token: the CA hash must be 64 lowercase hex digits")
    token_id, dot, secret = credentials.partition(".")
    if not dot or not _ID.fullmatch(token_id):
        raise TokenError(f"token: the id must be {ID_LENGTH} characters of [a-z0-9], followed by '.'")
    if not _SECRET.fullmatch(secret):
        raise TokenError(f"token: the secret must be {SECRET_LENGTH} characters of [a-z0-9]")
    return JoinToken(ca_hash="sha256:" + head, token_id=token_id, secret=secret)
