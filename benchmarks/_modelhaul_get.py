"""Download one spec with download_model() to the end (settings from the environment);
exit 1 on error. Used by the benchmarks as the modelhaul side."""

from __future__ import annotations

import asyncio
import sys

from downloader import DownloadStatus, download_model
from downloader.specs import parse_spec


async def main(spec_text: str) -> int:
    spec = parse_spec(spec_text)
    kwargs = {"filename": spec.patterns[0]} if spec.patterns else {}
    provider = "url" if spec.provider == "url" else spec.provider
    last = None
    async for progress in download_model(provider, spec.source, **kwargs):
        last = progress
    if last is None or last.status is not DownloadStatus.COMPLETE:
        print(last.message if last else "no progress", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1])))
