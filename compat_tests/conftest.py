"""Fixtures for stock clients against a real trioka process (the process is
trioka.testing.process.BrokerProcess; the clients are in clients.py, the rest in harness.py).

`broker` is one broker process for the whole session (per pytest-xdist worker: each worker is a
process with its own broker, port and data directory; every test uses topics of its own);
`own_broker` is a process of the test's own, for tests that stop, kill or restart it;
`cluster` a three-node `trioka serve --nodes 3` of the test's own (harness.FAST_FAILURE), whose
node log ends a failure message.
Every wait is bounded; nothing sleeps to synchronise.
"""

import re

import pytest

from harness import FAST_FAILURE, unique
from trioka.testing.process import BrokerProcess, ClusterProcess


@pytest.fixture(scope="session")
def broker():
    with BrokerProcess() as b:
        yield b.start()


@pytest.fixture
def own_broker():
    with BrokerProcess() as b:
        yield b.start()


@pytest.fixture
def cluster(tmp_path):
    c = ClusterProcess(3, str(tmp_path / "data"), overrides=FAST_FAILURE,
                       args=["--log-level", "INFO"])
    c.start()
    yield c
    c.close()


@pytest.fixture
def topic_name(request):
    base = re.sub(r"[^a-zA-Z0-9._-]", "-", request.node.name)[:80]
    return unique(base)
