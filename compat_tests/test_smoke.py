"""The first stock-client round trip: kcat lists metadata, produces and consumes."""

from clients import run_kcat


def test_kcat_metadata_produce_consume(broker, topic_name):
    r = run_kcat("-P", "-b", broker.bootstrap, "-t", topic_name, "-K:", input=b"k1:v1\nk2:v2\n")
    assert r.returncode == 0, r.stderr
    r = run_kcat("-C", "-b", broker.bootstrap, "-t", topic_name, "-o", "beginning", "-e",
                 "-f", "%k=%s@%o\\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split() == ["k1=v1@0", "k2=v2@1"]
    r = run_kcat("-L", "-b", broker.bootstrap, "-t", topic_name)
    assert f'topic "{topic_name}" with 1 partitions' in r.stdout.decode()
