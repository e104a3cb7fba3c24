"""The fuzzer's master: one real etcd and one real kyb-master for the whole module, and the run's figures.

Starting a master costs seconds and an example milliseconds, so one master (API only: `--controllers=`, so no
control loop writes behind the fuzzer's back) serves every example of the module. The processes are started
on a private event loop of the fixture, as the tests themselves are blocking (see tests/fuzz/api.py).
Hypothesis' profiles ("short" by default, "long" with `--hypothesis-profile=long`) are registered in
tests/conftest.py, which pytest reads before it parses that option.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from harness.master import MasterProcess
from kybernetes.master.store.embedded import EtcdProcess
from tests.fuzz.api import FIGURES, FuzzApi


@pytest.fixture(scope="module")
def fuzz_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzApi]:
    """A checked blocking client of a real master on a private etcd, shared by the module's examples."""
    base = tmp_path_factory.mktemp("fuzz")
    loop = asyncio.new_event_loop()
    etcd = EtcdProcess(data_dir=base / "etcd")
    master = MasterProcess(etcd=[etcd.endpoint], etcd_tls=etcd.client_tls, log_path=base / "master.log",
                           extra_args=["--controllers="])
    loop.run_until_complete(etcd.start())
    try:
        loop.run_until_complete(master.start())
        assert master.proc is not None
        api = FuzzApi(address=master.address, credentials=master.credentials(), etcd_endpoint=etcd.endpoint,
                      etcd_tls=etcd.client_tls, master_pid=master.proc.pid, master_log=master.log_path)
        try:
            yield api
            api.check_alive()
        finally:
            api.close()
    finally:
        loop.run_until_complete(master.stop())
        loop.run_until_complete(etcd.stop(grace=5.0))
        loop.close()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures of the run: cases per test, answers by gRPC code, writes read back."""
    for line in FIGURES.summary():
        terminalreporter.write_line(line)
