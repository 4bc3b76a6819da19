"""What TLS costs: 10 KB messages produced (acks=all) and then consumed with confluent-kafka over
a PLAINTEXT and an SSL listener of the same broker process (a data directory, so PLAINTEXT
fetches use sendfile and SSL fetches read the segment into memory and encrypt it).

    python bench/tls_timing.py [--mb 20] [--rounds 2]

Certificates come from `trioka certs` in a temporary directory. Each round uses a fresh topic per
listener and alternates which listener goes first; the best round of each is printed, in MB/s
(10^6 bytes of message values) and the SSL/PLAINTEXT ratio. A quick look, not the benchmark
(bench/run.py): one producer, one consumer, one partition, all in this process.
"""

import argparse
import os
import sys
import tempfile
import time
import uuid

from trioka.cli.certs import write
from trioka.testing.process import BrokerProcess

SIZE = 10_000


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def produce(conf: dict, topic: str, count: int) -> float:
    from confluent_kafka import Producer
    p = Producer({**conf, "acks": "all", "linger.ms": 5, "batch.size": 1_000_000})
    value = b"x" * SIZE
    start = time.perf_counter()
    for _ in range(count):
        while True:
            try:
                p.produce(topic, value, partition=0)
                break
            except BufferError:
                p.poll(0.01)
    if p.flush(60):
        raise SystemExit("produce did not finish")
    return time.perf_counter() - start


def consume(conf: dict, topic: str, count: int) -> float:
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({**conf, "group.id": uuid.uuid4().hex, "enable.auto.commit": False})
    c.assign([TopicPartition(topic, 0, 0)])
    got = 0
    start = time.perf_counter()
    deadline = start + 120
    while got < count:
        if time.perf_counter() > deadline:
            raise SystemExit(f"consumed {got} of {count}")
        for m in c.consume(1000, timeout=1):
            if m.error():
                raise SystemExit(str(m.error()))
            got += 1
    elapsed = time.perf_counter() - start
    c.close()
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--only", choices=("PLAINTEXT", "SSL"),
                    help="time one listener only (for a profile of its work)")
    args = ap.parse_args()
    count = args.mb * 1_000_000 // SIZE
    with tempfile.TemporaryDirectory() as certs_dir:
        certs = write(certs_dir)
        broker = BrokerProcess(listeners=("SSL",), overrides={
            "ssl.keystore.type": "PKCS12", "ssl.keystore.location": certs["broker.p12"],
            "ssl.keystore.password": "trioka-dev"})
        with broker:
            broker.start()
            ssl_port = broker.listener_port("SSL")
            confs = {"PLAINTEXT": {"bootstrap.servers": broker.bootstrap},
                     "SSL": {"bootstrap.servers": f"localhost:{ssl_port}",
                             "security.protocol": "SSL", "ssl.ca.location": certs["ca.pem"]}}
            best = {name: [0.0, 0.0] for name in confs}
            for r in range(args.rounds):
                order = list(confs) if r % 2 == 0 else list(reversed(confs))
                order = [name for name in order if args.only in (None, name)]
                for name in order:
                    topic = f"tls-timing-{name.lower()}-{r}"
                    mb = count * SIZE / 1e6
                    cpu = cpu_seconds(broker.pid), time.process_time()
                    took = produce(confs[name], topic, count)
                    p = mb / took
                    cpu_p = [(cpu_seconds(broker.pid) - cpu[0]) / took,
                             (time.process_time() - cpu[1]) / took]
                    cpu = cpu_seconds(broker.pid), time.process_time()
                    took = consume(confs[name], topic, count)
                    c = mb / took
                    cpu_c = [(cpu_seconds(broker.pid) - cpu[0]) / took,
                             (time.process_time() - cpu[1]) / took]
                    best[name] = [max(best[name][0], p), max(best[name][1], c)]
                    print(f"round {r + 1} {name:9}  produce {p:7.1f} MB/s  consume {c:7.1f} MB/s"
                          f"  (CPU broker/client: produce {cpu_p[0]:.0%}/{cpu_p[1]:.0%}, "
                          f"consume {cpu_c[0]:.0%}/{cpu_c[1]:.0%})", flush=True)
    if args.only:
        return 0
    plain, tls = best["PLAINTEXT"], best["SSL"]
    print(f"best      PLAINTEXT produce {plain[0]:.1f} consume {plain[1]:.1f} MB/s; "
          f"SSL produce {tls[0]:.1f} ({tls[0] / plain[0]:.0%}) "
          f"consume {tls[1]:.1f} ({tls[1] / plain[1]:.0%})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
