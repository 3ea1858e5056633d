"""Hypothesis, through schemathesis, fuzzes every route from the server's own OpenAPI
document (``GET /api/v1/openapi.json``): no answer is a 500, every status is documented, every
body matches its schema, invalid input is refused and the token is enforced.

The server is the real ``modelhaul serve`` on 127.0.0.1 in its own process, with a token,
every folder in a temp dir and every remote (Hub, Ollama daemon and registry) on a closed
local port: the downloads the fuzzer queues fail at once, nothing leaves this machine. About
15 examples per operation by default (a few hundred requests, well under a minute);
``MODELHAUL_FUZZ_EXAMPLES`` raises it; ``MODELHAUL_FUZZ_RANDOM=1`` draws new examples (by
default every run tries the same ones, so CI cannot turn red on a draw).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import schemathesis
from conftest import python_env
from hypothesis import HealthCheck, given, settings
from schemathesis import Case
from schemathesis.checks import not_a_server_error
from schemathesis.config import ProjectConfig, ProjectsConfig, SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)
from serverkit import free_port

from downloader.server.openapi import openapi

EXAMPLES = int(os.environ.get("MODELHAUL_FUZZ_EXAMPLES", "15"))
TOKEN = "fuzz-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CLOSED = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused
MODELHAUL = str(Path(sys.executable).parent / "modelhaul")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    ignored_auth,
    unsupported_method,
]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory):
    """``modelhaul serve`` with everything it touches under a temp dir; its base URL."""
    home = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = python_env(
        HOME=str(home),
        MODELHAUL_HOME=str(home / "modelhaul"),
        HF_ENDPOINT=CLOSED,
        HF_HUB_CACHE=str(home / "hf"),
        OLLAMA_HOST=CLOSED,
        OLLAMA_MODELS=str(home / "ollama"),
        MODELHAUL_OLLAMA_REGISTRY=CLOSED,
    )
    server = subprocess.Popen(
        [MODELHAUL, "serve", "--port", str(port), "--token", TOKEN],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, server)
        # One download in the ledger, so that every event stream has an event to send at once.
        r = requests.post(f"{url}/api/v1/downloads", json={"url": f"{CLOSED}/m.bin"}, headers=AUTH)
        assert r.status_code == 202, r.text
        yield url
    finally:
        server.terminate()
        try:
            _, log = server.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            _, log = server.communicate()
    # A 500 is also logged with its traceback: none may have happened, even unnoticed.
    assert "unexpected error in a request" not in log, log[-5000:]


def _wait_until_up(url: str, server: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert server.poll() is None, server.communicate()[1]
        try:
            if requests.get(f"{url}/health", headers=AUTH, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError("modelhaul serve did not answer within 30 s")


@pytest.fixture(scope="module")
def api(served: str):
    config = SchemathesisConfig(
        projects=ProjectsConfig(
            default=ProjectConfig(
                base_url=served,
                headers=AUTH,
                request_timeout=10,
                max_stream_events=1,  # the snapshot sent on connecting; then the stream is left
            )
        )
    )
    return schemathesis.openapi.from_url(
        f"{served}/api/v1/openapi.json", config=config, headers=AUTH, timeout=10
    )


# The operations, named at collection time from the document the server serves (the live one
# is fuzzed: each test finds its operation there).
OPERATIONS = [
    f"{method.upper()} {path}" for path, item in openapi()["paths"].items() for method in item
]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("label", OPERATIONS)
def test_every_route_answers_as_its_openapi_document_says(api, label, mode) -> None:
    operation = api.find_operation_by_label(label)
    assert operation is not None, f"{label} is not in the served document"

    @settings(
        max_examples=EXAMPLES,
        derandomize=not os.environ.get("MODELHAUL_FUZZ_RANDOM"),  # CI: the same every run
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def answers(case: Case) -> None:
        case.call_and_validate(headers=AUTH, checks=CHECKS)

    answers()
