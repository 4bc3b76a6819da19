"""The benchmark's security phase (bench/run.py --security), its pure parts: which cases it runs
(the main matrix's `10KB p1 acks=all none` and `100B p1 acks=1 none`, with the same message
counts), the librdkafka settings of each listener, how the ready line's listeners are read, and
the table, where SSL and SASL_SSL are given as a ratio to PLAINTEXT of the same case. The phase
itself runs brokers and clients: `python bench/run.py --security`."""

import pytest


def test_cases_are_the_main_matrix_ones_with_its_counts(bench):
    for quick in (False, True):
        matrix = {c.name: c.count for c in bench.cases(quick)}
        chosen = bench.security_cases(quick)
        assert [c.name for c in chosen] == ["10KB p1 acks=all none", "100B p1 acks=1 none"]
        assert all(c.count == matrix[c.name] for c in chosen)


def test_client_config_per_listener(bench):
    assert bench.security_client_config("PLAINTEXT", "/c") == {}
    assert bench.security_client_config("SSL", "/c") == {
        "security.protocol": "SSL", "ssl.ca.location": "/c/ca.pem"}
    assert bench.security_client_config("SASL_SSL", "/c") == {
        "security.protocol": "SASL_SSL", "ssl.ca.location": "/c/ca.pem",
        "sasl.mechanism": "SCRAM-SHA-512", "sasl.username": "bench",
        "sasl.password": "bench-secret"}


def test_ready_line_ports():
    from trioka.testing.process import BrokerProcess
    broker = BrokerProcess(memory=True, listeners=("SSL", "SASL_SSL"))
    ready = ("trioka ready: PLAINTEXT://127.0.0.1:4000 SSL://127.0.0.1:4001 "
             "SASL_SSL://127.0.0.1:4002 node 1 cluster abc data /d")
    broker.read_listener_ports(ready)
    assert (broker.listener_port("SSL"), broker.listener_port("SASL_SSL")) == (4001, 4002)
    assert "--listeners" in broker.command()
    listeners = broker.command()[broker.command().index("--listeners") + 1]
    assert listeners == ("PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:4001,"
                         "SASL_SSL://127.0.0.1:4002")     # the same ports on a restart
    with pytest.raises(RuntimeError, match="no SASL_SSL listener"):
        broker.read_listener_ports("trioka ready: PLAINTEXT://127.0.0.1:4000 "
                                   "SSL://127.0.0.1:4001 node 1 cluster abc data /d")


def phase(mbps: float, bound: float, cpu_pct: float, size: int) -> dict:
    return {"msgps": mbps * 1e6 / size, "MBps": mbps, "broker_cpu_pct": cpu_pct,
            "broker_bound_MBps": bound, "count": 1000}


def test_security_broker_command_has_the_three_listeners(bench, tmp_path):
    broker = bench.SecurityBroker(str(tmp_path / "data"), str(tmp_path / "certs"))
    command = broker.command()
    assert command[command.index("--listeners") + 1] == (
        "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_SSL://127.0.0.1:0")
    assert f"sasl.enabled.mechanisms={bench.SECURITY_MECHANISM}" in command


def test_table_gives_ratios_to_plaintext(bench):
    rows = []
    for listener, produce, consume in (("PLAINTEXT", (800, 1000), (900, 2000)),
                                       ("SSL", (200, 250), (450, 1000)),
                                       ("SASL_SSL", (160, 200), (600, 1500))):
        rows.append({"listener": listener, "case": "10KB p1 acks=all none",
                     "produce": phase(*produce, 90, 10240),
                     "consume": phase(*consume, 50, 10240)})
    lines = bench.security_lines({"mechanism": "SCRAM-SHA-512", "throughput": rows})
    assert "SASL_SSL (SCRAM-SHA-512)" in lines[0]
    plain, ssl, sasl = (next(line for line in lines if line.strip().startswith(name + " "))
                        for name in ("PLAINTEXT", "SSL", "SASL_SSL"))
    assert "x" not in plain.replace("acks", "")           # no ratio to itself
    produce, consume = ssl.split("|")[1:3]
    assert produce.split()[-2:] == ["x0.25", "x0.25"]     # MB/s 200/800, bound 250/1000
    assert consume.split()[-2:] == ["x0.50", "x0.50"]
    produce, consume = sasl.split("|")[1:3]
    assert produce.split()[-2:] == ["x0.20", "x0.20"]
    assert consume.split()[-2:] == ["x0.67", "x0.75"]
    assert bench.security_lines(None) == []
