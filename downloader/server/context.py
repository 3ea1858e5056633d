"""Typed keys for what the app shares with its handlers."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from downloader.manager import DownloadManager
from downloader.server.events import EventHub
from downloader.server.guard import SitePolicy

MANAGER = web.AppKey("manager", DownloadManager)
EVENTS = web.AppKey("events", EventHub)
ROOT = web.AppKey("root", Path)  # destinations must resolve inside this folder
TOKEN = web.AppKey("token", str)  # "" when no token is required
PEER_TOKEN = web.AppKey("peer_token", str)  # opens the blob route only; "" when none
SITE = web.AppKey("site", SitePolicy)  # which hosts and origins may call
