"""The benchmark's code path at a small scale, as a correctness check only (no timing is asserted):
real `liveblog serve` processes, private redis-servers and load generator processes, as in `bench/`."""

from __future__ import annotations

import re
from pathlib import Path

from bench.run import Config, big_photo, herd, one_blog, parse, scale_out, storm, uploader


async def test_every_reader_gets_every_update_once_in_order(tmp_path: Path) -> None:
    cfg = Config(readers=300, updates=4, interval=0.2, clients=2, workdir=tmp_path)
    row = await one_blog(cfg, "liveblog")
    assert row.expected == 300 * 4
    assert row.delivered == row.expected
    assert row.exact == row.readers == 300
    assert len(row.latencies) == row.expected


async def test_uploads_come_from_their_own_process_while_every_reader_gets_every_update(tmp_path: Path) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(big_photo(megapixels=1.0))
    cfg = Config(readers=100, updates=4, interval=0.5, clients=1, workdir=tmp_path)
    row = await one_blog(cfg, "liveblog", "uploads", background=uploader(photo),
                         env={"LIVEBLOG_MEDIA_DIR": str(tmp_path / "media")})
    assert row.delivered == row.expected == 100 * 4
    match = re.search(r"(\d+) uploads of 1 MB completed while posting \(uploader process CPU ", row.note)
    assert match and int(match.group(1)) >= 1, row.note
    assert "failed" not in row.note and "stopped early" not in row.note
    stored = list((tmp_path / "media").glob("*/*/manifest.json"))
    # the warm-up photo, one per completed upload, and perhaps the one in flight when the posting ended
    assert 1 + int(match.group(1)) <= len(stored) <= 2 + int(match.group(1))


async def test_reconnect_storm_resumes_without_gap_or_duplicate(tmp_path: Path) -> None:
    cfg = Config(readers=200, clients=1, storm_window=2.0, workdir=tmp_path)
    [row] = await storm(cfg)
    assert row.expected > 200 * 10
    assert row.delivered == row.expected
    assert row.exact == row.readers == 200
    assert "reconnects failed" not in row.note
    assert "the same storm with no update: 200 reconnects" in row.note and "CPU per reconnect" in row.note


def test_processes_option_sets_the_scale_out_process_count_and_defaults_to_two() -> None:
    assert parse(["run", "--scenario", "scaleout", "--processes", "4"])[1].processes == 4
    assert parse(["run"])[1].processes == 2


async def test_scale_out_splits_readers_over_n_processes_and_counts_redis_per_change(tmp_path: Path) -> None:
    """``--processes 3``: each process gets a third of the readers and every update reaches all of
    them; Redis sees one XREAD per process per change (each process reads every change once)."""
    cfg = Config(readers=150, updates=4, interval=0.5, processes=3, workdir=tmp_path)  # one XREAD per change
    [row] = await scale_out(cfg)
    assert row.scenario == "scale-out (3 processes)"
    assert row.processes == 3
    assert row.delivered == row.expected == 150 * 4
    assert row.exact == row.readers == 150
    assert all(f"process {i}: 200/200" in row.note for i in (1, 2, 3)), row.note
    assert row.redis is not None
    assert 2.0 <= row.redis.per_change().get("xread", 0) <= 4.0, row.redis.describe()
    assert row.rss_total is not None and row.rss_base is not None and row.rss_total > row.rss_base


async def test_deploy_herd_readers_follow_to_the_second_process_exactly_once(tmp_path: Path) -> None:
    """SIGTERM to the process holding every reader: each reconnects on its own to the other process
    (after its stream's ``retry:``, with ``Last-Event-ID``) and ends with every update exactly once."""
    cfg = Config(readers=150, clients=1, workdir=tmp_path)
    [row] = await herd(cfg)
    assert row.expected > 150 * 10
    assert row.delivered == row.expected
    assert row.exact == row.readers == 150
    assert "150/150 caught up" in row.note
    assert "never back" not in row.note

