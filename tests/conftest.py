"""What every unit test module in tests/ shares.

- Support modules live beside the tests and are imported by name: `record_batches`
  (`make_batch`, record batches v2 built byte by byte) and `wire_client` (`WireClient`,
  `memory_broker`: handlers called through the wire codec). pytest puts this directory on
  `sys.path` when it loads this file (rootdir-relative "prepend" imports, tests/ being no
  package), so a test module never imports another test module.
- `pytester`, pytest's own fixture for running a test file in a pytest of its own: used by
  test_testing_fixtures.py to check the `kafka_broker` and `kafka_topic` fixtures the plugin
  gives users.
- The trio fixtures (`mock_clock`, `autojump_clock`) come from pytest-trio (trio_mode is on in
  pyproject.toml).
- `bench`: the benchmark script bench/run.py loaded as a module, for the tests of its pure parts
  (it is a script, not part of the package).
"""

import importlib.util
import pathlib

import pytest

pytest_plugins = ["pytester"]

BENCH_RUN_PY = pathlib.Path(__file__).resolve().parent.parent / "bench" / "run.py"


@pytest.fixture(scope="session")
def bench():
    spec = importlib.util.spec_from_file_location("trioka_bench_run", BENCH_RUN_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
