"""Fault injection: the rules that make a broker misbehave on purpose (rules.py) and the admin
endpoint that reaches them over HTTP (endpoint.py). The command-line side is cli/control.py."""
