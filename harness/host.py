"""The host's safety net for pods started by tests and benchmarks: blackhole routes and reserved pod subnets.

* `guard_host_routes()`: blackhole routes for 10.244.0.0/16 and 10.96.0.0/12 when absent, for as long as
  the block runs; removes only what it added and restores net.ipv4.ip_forward (the CNI bridge's isGateway
  sets it), once the last process holding the guard is done (a pid list in a lock-protected JSON file under
  /run/kybernetes-tests, so concurrent test runs and benchmarks do not pull the routes from under each other).
* `reserve_pod_subnet()` / `release_pod_subnet()`: a pod /24 in 10.244.200-254, reserved across processes;
  `odd_pod_subnet()`: one whose third octet is odd (the upper half of a /23).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.system import locked, pid_alive, run_command

GUARD_DIR = Path("/run/kybernetes-tests")
GUARDED_ROUTES = ("10.244.0.0/16", "10.96.0.0/12")
TEST_SUBNET_THIRD_OCTETS = range(200, 255)
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")


# ----------------------------------------------------------------------------- host guard


# Our blackholes carry their own metric, so they coexist with (and never stand in for, or get removed with)
# anyone else's route to the same range, such as a running lab's. The deploy scripts' guards use
# 4000 + their routing protocol (77 or 200-249), so this one stays below 4000: two blackholes with the
# same prefix and metric cannot both exist ("RTNETLINK answers: File exists").
GUARD_METRIC = "3999"


def _blackhole_present(cidr: str) -> bool:
    result = run_command(["ip", "-4", "route", "show", "exact", cidr])
    return any(line.startswith("blackhole") and f"metric {GUARD_METRIC}" in line for line in result.stdout.splitlines())


def _write_state(path: Path, state: dict[str, Any]) -> None:
    """Written whole or not at all (a holder killed mid-write must not leave half a record for the next)."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(json.dumps(state))
    os.replace(partial, path)


@contextlib.contextmanager
def guard_host_routes(routes: tuple[str, ...] = GUARDED_ROUTES) -> Iterator[None]:
    """Hold the blackhole routes (and the ip_forward value) for as long as the block runs."""
    state_path = GUARD_DIR / "guard.json"
    lock_path = GUARD_DIR / "guard.lock"
    with locked(lock_path):
        state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
        holders = [pid for pid in state.get("holders", []) if pid_alive(pid) and pid != os.getpid()]
        if not holders:
            # A crashed holder's record still knows what it added and the original ip_forward.
            state = {"added": state.get("added", []),
                     "ip_forward": state.get("ip_forward") or IP_FORWARD.read_text().strip()}
        for cidr in routes:
            if not _blackhole_present(cidr):
                run_command(["ip", "route", "add", "blackhole", cidr, "metric", GUARD_METRIC], check=True)
                state["added"] = sorted(set(state["added"]) | {cidr})
        state["holders"] = [*holders, os.getpid()]
        _write_state(state_path, state)
    try:
        yield
    finally:
        with locked(lock_path):
            state = json.loads(state_path.read_text()) if state_path.exists() else {"holders": [], "added": []}
            state["holders"] = [pid for pid in state.get("holders", []) if pid != os.getpid() and pid_alive(pid)]
            if state["holders"]:
                _write_state(state_path, state)
            else:
                for cidr in state.get("added", []):
                    run_command(["ip", "route", "del", "blackhole", cidr, "metric", GUARD_METRIC])
                original = state.get("ip_forward")
                if original is not None and IP_FORWARD.read_text().strip() != original:
                    IP_FORWARD.write_text(original)
                state_path.unlink(missing_ok=True)


# ----------------------------------------------------------------------------- pod subnets


def reserve_pod_subnet() -> str:
    """A free /24 in 10.244.200-254.0/24: no route uses it and no live test process reserved it."""
    directory = GUARD_DIR / "subnets"
    with locked(GUARD_DIR / "subnets.lock"):
        directory.mkdir(parents=True, exist_ok=True)
        routes = run_command(["ip", "-4", "route", "show"]).stdout
        for octet in TEST_SUBNET_THIRD_OCTETS:
            cidr = f"10.244.{octet}.0/24"
            marker = directory / str(octet)
            if marker.exists():
                owner = marker.read_text().strip()
                if owner.isdigit() and pid_alive(int(owner)):
                    continue
                marker.unlink()
            if any(line.startswith(cidr + " ") for line in routes.splitlines()):
                continue
            marker.write_text(str(os.getpid()))
            return cidr
    raise RuntimeError("no free test pod subnet in 10.244.200.0/24-10.244.254.0/24")


def release_pod_subnet(cidr: str) -> None:
    octet = cidr.split(".")[2]
    with locked(GUARD_DIR / "subnets.lock"):
        (GUARD_DIR / "subnets" / octet).unlink(missing_ok=True)


def odd_pod_subnet() -> str:
    """Reserve a test pod /24 whose third octet is odd (the second half of a /23)."""
    rejected = []
    try:
        while True:
            cidr = reserve_pod_subnet()
            if int(cidr.split(".")[2]) % 2 == 1:
                return cidr
            rejected.append(cidr)
    finally:
        for cidr in rejected:
            release_pod_subnet(cidr)


__all__ = ["GUARDED_ROUTES", "guard_host_routes", "odd_pod_subnet", "release_pod_subnet", "reserve_pod_subnet"]
