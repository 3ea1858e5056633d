"""Progress formatting and the moving-average speed."""

from __future__ import annotations

from downloader.progress import (
    DownloadProgress,
    DownloadStatus,
    SpeedMeter,
    format_eta,
    format_speed,
)
from storage import TaskState


def test_speed_and_eta_read_like_the_seeds() -> None:
    assert format_speed(12_500_000) == "12.5 MB/s"
    assert format_speed(0) is None
    assert format_eta(150) == "2m 30s"
    assert format_eta(42) == "42s"
    assert format_eta(7260) == "2h 1m"
    assert format_eta(None) is None


def test_speed_is_a_moving_average_not_the_lifetime_mean() -> None:
    meter = SpeedMeter(window=5)
    for second in range(0, 11):  # 10 MB/s for ten seconds …
        meter.add(second * 10_000_000, now=float(second))
    for second in range(11, 17):  # … then 1 MB/s
        meter.add(100_000_000 + (second - 10) * 1_000_000, now=float(second))
    assert 0.9e6 < meter.rate() < 1.5e6  # the lifetime mean would be ~6.5 MB/s


def test_progress_serialises_with_enum_values() -> None:
    p = DownloadProgress(
        DownloadStatus.DOWNLOADING, "pulling", percent=45.5, task_id=3, state=TaskState.DOWNLOADING
    )
    data = p.to_dict()
    assert data["status"] == "downloading" and data["state"] == "downloading"
    assert data["percent"] == 45.5 and p.percent_complete == 45 and p.fraction_completed == 0.455
    assert DownloadStatus.COMPLETE.is_final and not DownloadStatus.VERIFYING.is_final
