"""trioka as a test double: a broker inside your own process (embedded.py, `trioka.Broker`), the
pytest plugin with its fixtures (pytest_plugin.py, registered through the `pytest11` entry point),
and a broker as a separate process (process.py), for tests and the benchmark that need a real
SIGKILL or a process of its own."""
