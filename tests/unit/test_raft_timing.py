"""etcd's raft timing as kyb-master and the lab set it (master.store.embedded.RaftTiming): the rules etcd applies,
refused up front with the field named, and the shortest lease etcd grants with it."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from kybernetes.master.main import main
from kybernetes.master.store.embedded import RaftTiming


@pytest.mark.parametrize(("heartbeat", "election", "shortest"), [
    (50, 600, 1),      # ours: the 1 s leadership lease is granted as asked
    (100, 1000, 2),    # etcd's defaults: 1.5 s, rounded up
    (100, 2000, 3),
    (500, 5000, 8),    # the VM lab under software emulation: 7.5 s, rounded up
    (250, 1400, 2),    # 5 whole ticks of 250 ms (not 5.6), and 7 of them (not 7.5): 1.75 s
])
def test_the_shortest_lease_etcd_grants_is_three_halves_of_the_election_ticks(heartbeat: int, election: int,
                                                                             shortest: int):
    timing = RaftTiming(heartbeat_ms=heartbeat, election_ms=election)
    assert timing.min_lease_seconds == shortest
    assert timing.args() == [f"--heartbeat-interval={heartbeat}", f"--election-timeout={election}"]


@pytest.mark.parametrize(("heartbeat", "election", "named"), [
    (100, 499, "election timeout: must be at least 5 × the heartbeat interval (500 ms)"),
    (50, 50_001, "election timeout"),
    (0, 600, "heartbeat interval: must be 1 to 10000 ms"),
])
def test_timing_etcd_would_refuse_is_refused_naming_the_rule(heartbeat: int, election: int, named: str):
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        RaftTiming(heartbeat_ms=heartbeat, election_ms=election)


def test_kyb_master_refuses_an_election_timeout_under_five_heartbeats_before_it_starts():
    result = CliRunner().invoke(main, ["--etcd-heartbeat-interval", "500", "--etcd-election-timeout", "1000"])
    assert result.exit_code == 2, result.output
    assert "--etcd-election-timeout" in result.output
    assert "at least 5 × the heartbeat interval (2500 ms)" in result.output
