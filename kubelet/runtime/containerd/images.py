"""Images: presence, pulls and entrypoints (docs/containerd.md §3).

`ensure_image` applies the pull policy (Always | IfNotPresent | Never). Names are looked up as given
(e.g. `kyb/hello:v1` from an import) and docker-normalized (`docker.io/library/...:latest`); pulls use
the normalized reference, with `--plain-http` for the registries given as insecure, one pull per
reference at a time. An image seen present is trusted for IMAGE_PRESENT_TTL seconds, and concurrent
lookups of the same names share one `ctr images ls`, so a batch of pods with one image costs one call.
An image's config Entrypoint is read from its content (cached) when a container gives args only.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from collections.abc import Sequence
from typing import Any

from kybernetes.kubelet.runtime.base import (
    PULL_POLICIES,
    ContainerRuntimeError,
    ContainerStartError,
    ImageNeverPulled,
    ImagePullError,
    RuntimeUnavailableError,
)
from kybernetes.kubelet.runtime.containerd.ctr import CtrCalls, CtrError

PULL_TIMEOUT = 300.0
IMAGE_PRESENT_TTL = 2.0  # seconds an image seen present is trusted without asking containerd again


def normalize_image_reference(image: str) -> str:
    """Docker-style normalization for pulling: add docker.io[/library] and :latest where missing."""
    name, at, digest = image.partition("@")
    first, slash, rest = name.partition("/")
    if not slash:
        name = f"docker.io/library/{name}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + (at + digest if at else "")


def registry_host(reference: str) -> str:
    return normalize_image_reference(reference).split("/", 1)[0]


class ImagesMixin(CtrCalls):
    """Image presence, pulls and entrypoints of `ContainerdRuntime` (see the module docstring)."""

    # Set by ContainerdRuntime.__init__.
    insecure_registries: frozenset[str]
    _pull_timeout: float
    _pull_locks: dict[str, asyncio.Lock]
    _entrypoints: dict[str, list[str]]
    _present: dict[str, tuple[float, str]]
    _lookups: dict[tuple[str, ...], asyncio.Task[str | None]]

    async def _find_image(self, names: Sequence[str], *, cached: bool = True) -> str | None:
        """The first of `names` that containerd holds, or None.

        A name seen present within IMAGE_PRESENT_TTL is trusted, and concurrent lookups of the same names
        share one `ctr images ls`. An image removed behind our back in that window fails the container's
        start ("not found"), which forgets it (`forget_image`), so the retry looks again.
        """
        key = tuple(dict.fromkeys(names))
        now = time.monotonic()
        if cached:
            for name in key:
                seen = self._present.get(name)
                if seen is not None and now - seen[0] < IMAGE_PRESENT_TTL:
                    return seen[1]
        lookup = self._lookups.get(key)
        if lookup is None:
            lookup = asyncio.create_task(self._images_ls(key))
            self._lookups[key] = lookup
            lookup.add_done_callback(functools.partial(self._lookup_done, key))
        return await asyncio.shield(lookup)

    async def _images_ls(self, names: tuple[str, ...]) -> str | None:
        result = await self._ctr("images", "ls", "-q", *(f"name=={name}" for name in names))
        present = result.stdout.split()
        found = next((name for name in names if name in present), None)
        if found is not None:
            for name in names:
                self._present[name] = (time.monotonic(), found)
        return found

    def _lookup_done(self, key: tuple[str, ...], done: asyncio.Task[str | None]) -> None:
        self._lookups.pop(key, None)
        if not done.cancelled():
            done.exception()  # every waiter may have been cancelled: never "exception was never retrieved"

    def forget_image(self, image: str) -> None:
        """Drop what we believe about `image` (after containerd said it is not found)."""
        for name in (image, normalize_image_reference(image)):
            self._present.pop(name, None)
            self._entrypoints.pop(name, None)

    async def ensure_image(self, image: str, *, pull_policy: str) -> str:
        """Make `image` present per the policy (Always | IfNotPresent | Never); return the ref to use.

        Names are looked up as given (e.g. `kyb/hello:v1` from an import) and docker-normalized
        (`docker.io/library/...:latest`); pulls use the normalized reference, `--plain-http` for the
        registries given as insecure.
        """
        if pull_policy not in PULL_POLICIES:
            raise ValueError(f"pull_policy: {pull_policy!r} must be one of {', '.join(PULL_POLICIES)}")
        if not image or any(character.isspace() for character in image):
            raise ImagePullError(f"image: {image!r} is not a valid image reference")
        reference = normalize_image_reference(image)
        if pull_policy != "Always":
            present = await self._find_image([image, reference])
            if present:
                return present
            if pull_policy == "Never":
                raise ImageNeverPulled(f"image {image!r} is not present and the pull policy is Never")
        lock = self._pull_locks.setdefault(reference, asyncio.Lock())
        async with lock:
            if pull_policy != "Always":
                present = await self._find_image([image, reference], cached=False)
                if present:
                    return present
            await self._pull(reference)
        return reference

    async def _pull(self, reference: str) -> None:
        flags = ["--plain-http"] if registry_host(reference) in self.insecure_registries else []
        try:
            await self._ctr("images", "pull", *flags, reference, timeout=self._pull_timeout, expensive=True)
        except CtrError as error:
            raise ImagePullError(f"pulling {reference}: {error.message}") from error
        except RuntimeUnavailableError:
            raise
        except ContainerRuntimeError as error:
            raise ImagePullError(f"pulling {reference}: {error}") from error
        self._entrypoints.pop(reference, None)
        self._present[reference] = (time.monotonic(), reference)

    async def _content_json(self, digest: str) -> dict[str, Any]:
        result = await self._ctr("content", "get", digest)
        return json.loads(result.stdout)

    async def _image_entrypoint(self, image: str) -> list[str]:
        """The image config's Entrypoint (needed when only args are given: ctr args replace both)."""
        if image in self._entrypoints:
            return self._entrypoints[image]
        result = await self._ctr("images", "ls", f"name=={image}")
        rows = [line.split() for line in result.stdout.splitlines()[1:] if line.strip()]
        if not rows:
            raise ContainerStartError("CreateContainerError", f"image {image!r} is not present")
        document = await self._content_json(rows[0][2])
        if "manifests" in document:
            architecture = {"x86_64": "amd64", "aarch64": "arm64"}.get(os.uname().machine, os.uname().machine)
            manifests = document["manifests"]
            chosen = next((m for m in manifests if m.get("platform", {}).get("os") == "linux"
                           and m.get("platform", {}).get("architecture") == architecture), manifests[0])
            document = await self._content_json(chosen["digest"])
        config = await self._content_json(document["config"]["digest"])
        entrypoint = list((config.get("config") or {}).get("Entrypoint") or [])
        self._entrypoints[image] = entrypoint
        return entrypoint
