"""modelhaul: a downloader for large model files that never loses work."""
