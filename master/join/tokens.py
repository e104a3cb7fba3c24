"""Join tokens as the master keeps them: in etcd under /kybernetes/tokens/<id>, as JSON holding the sha256 of
the id and secret, never the secret (kubeadm's bootstrap tokens live in Secrets; we have none yet).

A token is good until it is deleted or its expiry passes. A refusal says which of these it was (unknown id,
wrong secret, expired), so an operator reading the kubelet's error knows to make a new token; it never
echoes the secret. The id is public (it names the token in lists and logs).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

from kybernetes.core.identity.tokens import JoinToken, generate, secret_matches
from kybernetes.master.store.etcd import RawKeys, Store


class TokenRefused(Exception):  # noqa: N818 - a refusal, answered UNAUTHENTICATED
    """The token does not let its holder join."""


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: str
    secret_hash: str
    description: str
    created: int
    expires: int  # seconds since the epoch; 0 = never

    def expired(self, now: float) -> bool:
        return bool(self.expires) and now >= self.expires


class TokenRegistry:
    """Create, list, delete and verify join tokens."""

    def __init__(self, store: Store, *, ca_hash: str) -> None:
        self.keys = RawKeys(store, "tokens")
        self.ca_hash = ca_hash

    async def create(self, *, ttl_seconds: int = 0, description: str = "") -> tuple[JoinToken, TokenRecord]:
        for _ in range(5):
            token = generate(self.ca_hash)
            now = int(time.time())
            record = TokenRecord(id=token.token_id, secret_hash=token.secret_hash, description=description,
                                 created=now, expires=now + ttl_seconds if ttl_seconds else 0)
            if await self.keys.create(token.token_id, json.dumps(asdict(record)).encode()):
                return token, record
        raise RuntimeError("could not pick an unused token id")

    async def list(self) -> list[TokenRecord]:
        return sorted((TokenRecord(**json.loads(v)) for v in (await self.keys.items()).values()),
                      key=lambda r: (r.created, r.id))

    async def delete(self, token_id: str) -> bool:
        return await self.keys.delete(token_id)

    async def verify(self, token: JoinToken) -> TokenRecord:
        """The record of a token that lets its holder join; TokenRefused otherwise (says why, not the secret)."""
        if token.ca_hash != self.ca_hash:
            raise TokenRefused("token: the CA hash is not this cluster's")
        raw = await self.keys.get(token.token_id)
        if raw is None:
            raise TokenRefused(f'token "{token.token_id}": not found (deleted, or never made)')
        record = TokenRecord(**json.loads(raw))
        if not secret_matches(token, record.secret_hash):
            raise TokenRefused(f'token "{token.token_id}": the secret does not match')
        if record.expired(time.time()):
            raise TokenRefused(f'token "{token.token_id}": expired')
        return record
