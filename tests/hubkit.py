"""A local hub with a few repos, shared by the Hugging Face tests."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from conftest import PYTHON, python_env

from downloader.settings import MiB
from downloader.testing.hub import Hub
from downloader.testing.modelfiles import gguf_bytes, safetensors_bytes, split_gguf

TOKEN = "hf_valid_token_for_tests"


def build_hub(workdir: Path, **kwargs) -> Hub:
    """org/tiny (small and LFS files, nested folders, two revisions), org/gated, org/sharded
    (a safetensors index and its shards), org/split (a 3-part GGUF), mlx-community/small."""
    hub = Hub(workdir, tokens={TOKEN}, page_size=3, **kwargs)
    hub.add_repo(
        "org/tiny",
        {
            "config.json": b'{"model_type": "llama"}',
            "README.md": b"# tiny\n",
            "tokenizer/tokenizer.json": json.dumps({"v": list(range(200))}).encode(),
            "model-Q4_K_M.gguf": gguf_bytes(size=6 * MiB + 123, seed=1),
            "model-Q8_0.gguf": gguf_bytes(size=3 * MiB, seed=2),
        },
    )
    hub.add_repo(
        "org/tiny",
        {
            "config.json": b'{"model_type": "old"}',
            "model-Q4_K_M.gguf": gguf_bytes(size=1000, name="v1"),
        },
        revision="v1.0",
    )
    hub.add_repo("org/gated", {"model.gguf": gguf_bytes(size=2 * MiB, seed=3)}, gated=True)
    shards = {
        f"model-0000{i}-of-00003.safetensors": safetensors_bytes({f"w{i}": (MiB // 4 + i,)}, seed=i)
        for i in (1, 2, 3)
    }
    index = {"metadata": {}, "weight_map": {f"w{i}": n for i, n in enumerate(shards, 1)}}
    hub.add_repo(
        "org/sharded",
        {**shards, "model.safetensors.index.json": json.dumps(index).encode(), "x.txt": b"x"},
    )
    hub.add_repo(
        "org/split",
        split_gguf("big", [MiB * i for i in (1, 2, 3)]) | {"other.gguf": gguf_bytes(size=MiB)},
    )
    hub.add_repo(
        "mlx-community/small",
        {"config.json": b"{}", "weights.safetensors": safetensors_bytes({"w": (512, 512)})},
    )
    return hub


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def real_client(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` with the real huggingface_hub in a fresh process."""
    return subprocess.run(
        [PYTHON, "-c", code],
        capture_output=True,
        text=True,
        env=python_env(HF_HUB_DISABLE_TELEMETRY="1", HF_HUB_DISABLE_PROGRESS_BARS="1", **env),
        timeout=120,
    )
