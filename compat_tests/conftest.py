"""Fixtures for stock clients against a real trioka process (the process is
trioka.testing.process.BrokerProcess; the clients are in clients.py, the rest in harness.py).

`broker` is one broker process for the whole session (per pytest-xdist worker: each worker is a
process with its own broker, port and data directory; every test uses topics of its own);
`own_broker` is a process of the test's own, for tests that stop, kill or restart it.
Every wait is bounded; nothing sleeps to synchronise.
"""

import re

import pytest

from harness import unique
from trioka.testing.process import BrokerProcess


@pytest.fixture(scope="session")
def broker():
    with BrokerProcess() as b:
        yield b.start()


@pytest.fixture
def own_broker():
    with BrokerProcess() as b:
        yield b.start()


@pytest.fixture
def topic_name(request):
    base = re.sub(r"[^a-zA-Z0-9._-]", "-", request.node.name)[:80]
    return unique(base)
