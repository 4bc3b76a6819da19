"""The benchmark's loop-lag report (bench/run.py), its pure parts: the hypervisor's steal time
sampled alongside the probe and shown with each of the worst round trips (a round trip that
waited on the host, not only on the broker)."""


def test_steal_is_counted_in_the_window_of_each_worst_round_trip(bench, tmp_path):
    lag = bench.LoopLag(str(tmp_path))
    lag.steal.stop()
    ms = 1_000_000
    lag.steal.tick_ms = 10.0
    lag.steal.samples = [(1_000 * ms, 3), (1_090 * ms, 2), (5_000 * ms, 4)]
    lag.sent_ns = [900 * ms, 1_000 * ms, 4_000 * ms]
    lag.rtt_ns = [1 * ms, 80 * ms, 2 * ms]
    lag.phases = [("produce", 0, 10_000 * ms)]
    summary = lag.summary()
    worst = summary["worst"][0]
    assert (worst["rtt_ms"], worst["steal_ms"]) == (80.0, 50.0)   # 1,000 and 1,090 ms samples
    assert summary["worst"][1]["steal_ms"] == 0                  # 4,000 ms: none near
    assert summary["steal_ms"] == 90.0
    lines = bench.loop_lag_lines(summary)
    assert "worst: 80 ms (produce; steal 50 ms), 2 ms (produce), 1 ms (produce)" \
        in lines
    assert any(line.startswith("hypervisor steal over the run: 90 CPU-ms") for line in lines)
