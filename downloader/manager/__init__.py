"""The manager: queueing, running and controlling tasks over the ledger."""

from downloader.manager.manager import DownloadManager, Task

__all__ = ["DownloadManager", "Task"]
