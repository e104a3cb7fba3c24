"""`kyb-master` as a user runs it: no flags, embedded etcd, graceful shutdown on SIGTERM and SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from harness.builders import make_pod
from harness.waiting import until
from kybernetes.ctl.client import Client


def _children_of(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry.name))
    return out


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_no_flags_serves_on_6443_with_embedded_etcd_and_stops_cleanly(tmp_path: Path, sig: int):
    env = {**os.environ, "HOME": str(tmp_path)}
    log = (tmp_path / "master.log").open("wb")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "kybernetes.master.main", env=env, stdout=log,
                                                stderr=log, stdin=asyncio.subprocess.DEVNULL)
    try:
        # With no flags the admin credentials file goes to the data dir's default, beside the etcd data.
        admin = tmp_path / ".local/share/kybernetes/admin.conf"
        await until(admin.exists, timeout=30, message="admin.conf written")
        assert admin.stat().st_mode & 0o777 == 0o600
        async with Client(kubeconfig=admin, timeout=2) as client:
            assert client.server == "127.0.0.1:6443"
            await until(lambda: client.list("pods"), timeout=30)
            created = await client.create(make_pod("p"))
            assert created.metadata.uid
        data = tmp_path / ".local/share/kybernetes/etcd"
        assert data.is_dir(), "the embedded etcd keeps its data under --data-dir's default"
        etcd_children = _children_of(proc.pid)
        assert etcd_children, "the embedded etcd runs as the master's child"
        os.kill(proc.pid, sig)
        code = await asyncio.wait_for(proc.wait(), 20)
        assert code == 0, (tmp_path / "master.log").read_text()[-2000:]
        for child in etcd_children:
            assert not Path(f"/proc/{child}").exists() or "Z" in Path(f"/proc/{child}/stat").read_text().split()[2]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
