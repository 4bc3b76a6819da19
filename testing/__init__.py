"""trioka as a test double: a broker inside your own process (embedded.py, `trioka.Broker`) and
the pytest plugin with its fixtures (pytest_plugin.py, registered through the `pytest11` entry
point)."""
