"""`trioka control clock` (cli/control.py): the durations and times it reads, and the line it
prints for a clock. The requests it sends are checked against a broker in
compat_tests/test_virtual_time.py."""

import pytest

from trioka.cli import UsageError
from trioka.cli.control import clock_summary, parse_duration, parse_time


@pytest.mark.parametrize("text, ms", [
    ("500ms", 500), ("30s", 30_000), ("5m", 300_000), ("2h", 7_200_000), ("7d", 604_800_000),
    ("1w", 604_800_000), ("1h30m", 5_400_000), ("1d12h", 129_600_000), ("0.1s", 100),
    ("1.5h", 5_400_000), ("1500", 1500), ("0", 0), (" 7D ", 604_800_000),
])
def test_durations(text, ms):
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "7x", "ms", "-5s", "7d3", "1.0001ms", "s30", "1h 30m"])
def test_bad_durations_are_usage_errors_naming_them(text):
    with pytest.raises(UsageError) as raised:
        parse_duration(text)
    assert repr(text) in str(raised.value)


@pytest.mark.parametrize("text, ms", [
    ("2030-01-01T00:00:00Z", 1_893_456_000_000),
    ("2030-01-01T00:00:00", 1_893_456_000_000),                # UTC when no zone is named
    ("2030-01-01T02:00:00+02:00", 1_893_456_000_000),
    ("2030-01-01T00:00:00.250Z", 1_893_456_000_250),
    ("1893456000000", 1_893_456_000_000),
])
def test_times(text, ms):
    assert parse_time(text) == ms


def test_a_bad_time_is_a_usage_error():
    with pytest.raises(UsageError, match="'next tuesday'"):
        parse_time("next tuesday")


def test_the_clock_as_printed():
    assert clock_summary({"wall_ms": 1_893_456_000_250, "virtual": True}) == \
        "Virtual clock at 2030-01-01T00:00:00.250Z (1893456000250 ms)"
    assert clock_summary({"wall_ms": 0, "virtual": False}) == \
        "Real clock at 1970-01-01T00:00:00.000Z (0 ms)"
