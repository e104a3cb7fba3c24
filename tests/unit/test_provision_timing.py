"""provision.sh configure --etcd-heartbeat-ms/--etcd-election-ms: written to kybernetes.env when etcd would accept
them, refused naming the rule (nothing written) when it would not."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PROVISION = REPO / "deploy" / "provision" / "provision.sh"


def _configure(tmp_path: Path, *timing: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(PROVISION), "configure", "--role", "master", "--name", "m1", "--ip", "10.9.9.9",
                           "--etc", str(tmp_path / "etc"), "--state", str(tmp_path / "state"), *timing],
                          capture_output=True, text=True, timeout=60)


def test_the_timing_is_written_for_the_etcd_unit(tmp_path: Path):
    result = _configure(tmp_path, "--etcd-heartbeat-ms", "500", "--etcd-election-ms", "5000")
    assert result.returncode == 0, result.stderr
    env = (tmp_path / "etc" / "kybernetes.env").read_text()
    assert 'KYB_ETCD_HEARTBEAT_MS="500"' in env and 'KYB_ETCD_ELECTION_MS="5000"' in env


def test_an_election_timeout_under_five_heartbeats_is_refused_and_nothing_is_written(tmp_path: Path):
    result = _configure(tmp_path, "--etcd-heartbeat-ms", "500", "--etcd-election-ms", "2000")
    assert result.returncode == 1
    assert "--etcd-election-ms must be milliseconds from 5 × --etcd-heartbeat-ms (2500) to 50000" in result.stderr
    assert not (tmp_path / "etc" / "kybernetes.env").exists()


def test_a_heartbeat_that_is_not_whole_milliseconds_is_refused(tmp_path: Path):
    result = _configure(tmp_path, "--etcd-heartbeat-ms", "0.5")
    assert result.returncode == 1
    assert "--etcd-heartbeat-ms must be a whole number of milliseconds" in result.stderr
