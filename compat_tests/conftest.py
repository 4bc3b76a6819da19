"""Fixtures for stock clients against a real trioka process (helpers are in harness.py).

`broker` is one broker process for the whole session (each test uses its own topics);
`own_broker` is a process of the test's own, for tests that stop, kill or restart it.
Every wait is bounded; nothing sleeps to synchronise.
"""

import re

import pytest

from harness import BrokerProcess, unique


@pytest.fixture(scope="session")
def broker():
    b = BrokerProcess().start()
    yield b
    b.close()


@pytest.fixture
def own_broker():
    b = BrokerProcess().start()
    yield b
    b.close()


@pytest.fixture
def topic_name(request):
    base = re.sub(r"[^a-zA-Z0-9._-]", "-", request.node.name)[:80]
    return unique(base)
