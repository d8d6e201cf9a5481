"""The bench's capacity-model arithmetic: Redis commands per change net of the idle background, and
the prediction of a scale-out run from the single-process fan-out row (no processes started)."""

from __future__ import annotations

from bench import model
from bench.redisload import RedisLoad
from bench.report import Row


def test_redis_per_change_subtracts_the_idle_background_in_proportion_to_time() -> None:
    # Busy 10 s with 5 changes; idle 5 s. SMEMBERS runs 2/s in both: nothing of it is per change.
    load = RedisLoad(changes=5, busy_seconds=10.0, idle_seconds=5.0,
                     busy_calls={"xread": 15, "evalsha": 6, "smembers": 20},
                     idle_calls={"evalsha": 1, "smembers": 10}, busy_usec=1_000, idle_usec=100)
    assert load.per_change() == {"xread": 3.0, "evalsha": 0.8}
    assert load.usec_per_change() == (1_000 - 200) / 5
    assert load.idle_per_second() == 11 / 5
    assert load.describe().startswith("Redis per change, net of an idle 5 s with the same readers: 3.8 commands")


def _row(scenario: str, processes: int, readers: int, delivered: int, cpu: float, cpu_connect: float,
         rss_base: float, rss_total: float) -> Row:
    row = Row(scenario, "liveblog", readers, delivered, delivered, cpu=cpu)
    row.processes, row.cpu_connect, row.rss_base, row.rss_total = processes, cpu_connect, rss_base, rss_total
    return row


def test_model_check_predicts_the_scale_out_from_the_single_process_row() -> None:
    mb = 2**20
    # 1 process: 1,000 readers, 10,000 events; 1 s to connect (1 ms each), 2 s for the events (200 µs each),
    # 50 MB before readers, +10 MB with them (10.24 KB per reader).
    reference = _row("fan-out", 1, 1_000, 10_000, 3.0, 1.0, 50 * mb, 60 * mb)
    # 4 processes, 2,000 readers: predicted 2 s + 4 s of CPU, 20 MB growth, 4 × 50 + 20 = 220 MB total.
    scaled = _row("scale-out (4 processes)", 4, 2_000, 20_000, 9.0, 3.0, 200 * mb, 230 * mb)
    text = model.check([reference, scaled])
    assert "| CPU while 2,000 readers connect | 1,000 µs per reader | 2.0 s | 3.0 s | 1.50 |" in text
    assert "| CPU while 20,000 events are delivered | 200.0 µs per event | 4.0 s | 6.0 s | 1.50 |" in text
    assert "| CPU, both |  | 6.0 s | 9.0 s | 1.50 |" in text
    assert "| RSS growth with the readers | 10.2 KB per reader | 20 MB | 30 MB | 1.50 |" in text
    assert "| RSS, total | 50 MB per process before readers | 220 MB | 230 MB | 1.05 |" in text


def test_model_check_says_when_the_single_process_row_is_missing() -> None:
    scaled = _row("scale-out (4 processes)", 4, 2_000, 20_000, 9.0, 3.0, 200.0, 230.0)
    assert "needs the single-process fan-out row" in model.check([scaled])
    assert model.check([]) == ""
