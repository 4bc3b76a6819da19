"""Listener security: TLS (tls.py), SASL (sasl/) and the identity of a connection's client."""
