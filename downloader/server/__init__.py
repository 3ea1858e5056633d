"""The REST + SSE server and its web page, over the same manager and ledger as everything
else. ``create_app`` embeds it in another aiohttp app; ``serve`` runs it."""

from downloader.server.app import create_app
from downloader.server.serve import BindError, check_bind, serve

__all__ = ["BindError", "check_bind", "create_app", "serve"]
