"""Networks people really have, through the real ``modelhaul`` script: an HTTP proxy
(Debian's tinyproxy) that every request goes through, NO_PROXY, HTTPS through CONNECT,
proxy credentials; a private CA; quick failures for a certificate no one trusts and a host
no one answers."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
from pathlib import Path

from clikit import run
from hubkit import build_hub
from netkit import PrivateCA, Tinyproxy

from downloader.settings import MiB
from downloader.testing.ollama import MODEL_LAYER, Registry
from downloader.testing.origin import Origin

# The machine's own CA variables would name the system bundle: each test says what it means.
NO_CA = {"REQUESTS_CA_BUNDLE": "", "SSL_CERT_FILE": "", "MODELHAUL_CA_CERTIFICATE": ""}
DIRECT = {"HTTP_PROXY": "", "HTTPS_PROXY": "", "ALL_PROXY": "", "NO_PROXY": "", **NO_CA}


def _via_proxy(log) -> list[bool]:
    return ["tinyproxy" in (r.headers.get("Via") or "") for r in log if r.method == "GET"]


async def test_every_byte_request_goes_through_the_proxy_and_no_proxy_bypasses_it(
    tmp_path: Path,
) -> None:
    data = random.Random(1).randbytes(8 * MiB)
    async with Tinyproxy(tmp_path / "proxy") as proxy, Origin({"m.bin": data}) as origin:
        env = {**DIRECT, "HTTP_PROXY": proxy.url}
        args = ("get", origin.url("m.bin"), "--dest", f"{tmp_path / 'a'}/", "--connections", "4")
        got = await run(tmp_path / "h1", *args, **env)
        assert got.code == 0, got.stderr
        through = _via_proxy(origin.log)
        carried = [t for m, t in proxy.requests() if m == "GET" and t.endswith("/files/m.bin")]
        assert len(through) > 1 and all(through), origin.log  # probe and every range
        assert len(carried) == len(through)  # and the proxy's log says the same

        # NO_PROXY names the origin: straight there, nothing more through the proxy
        origin.log.clear()
        bypass = {**env, "NO_PROXY": "localhost,127.0.0.1"}
        args = ("get", origin.url("m.bin"), "--dest", f"{tmp_path / 'b'}/")
        got = await run(tmp_path / "h2", *args, **bypass)
        assert got.code == 0, got.stderr
        assert _via_proxy(origin.log) and not any(_via_proxy(origin.log))
        assert len(proxy.requests()) == len(carried)

        # --proxy without any variable: the same way out
        origin.log.clear()
        args = ("get", origin.url("m.bin"), "--dest", f"{tmp_path / 'c'}/", "--proxy", proxy.url)
        got = await run(tmp_path / "h3", *args, **DIRECT)
        assert got.code == 0, got.stderr
        assert all(_via_proxy(origin.log)) and _via_proxy(origin.log)
    for folder in "abc":
        assert (tmp_path / folder / "m.bin").read_bytes() == data


async def test_a_hugging_face_download_goes_through_the_proxy_metadata_and_bytes(
    tmp_path: Path,
) -> None:
    hub = await asyncio.to_thread(build_hub, tmp_path / "hub")
    async with Tinyproxy(tmp_path / "proxy") as proxy, hub:
        # --proxy, not a variable: huggingface_hub's own client would never have heard of it
        env = {**DIRECT, "HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(tmp_path / "cache")}
        got = await run(tmp_path / "home", "get", "hf://org/tiny", "--proxy", proxy.url, **env)
        assert got.code == 0, got.stderr
        hub_requests = [r for r in hub.log if r.method == "GET"]
        cdn_requests = [r for r in hub.cdn.log if r.method == "GET"]
    assert hub_requests and cdn_requests
    assert all(_via_proxy(hub.log)), [(r.path, r.headers.get("Via")) for r in hub_requests]
    assert all(_via_proxy(hub.cdn.log))
    assert len(proxy.requests()) == len(hub_requests) + len(cdn_requests)


async def test_an_ollama_pull_from_the_registry_goes_through_the_proxy(tmp_path: Path) -> None:
    async with Tinyproxy(tmp_path / "proxy") as proxy, Registry(tmp_path / "reg") as registry:
        weights = random.Random(4).randbytes(3 * MiB)
        registry.add_model("library/gemma3", [(MODEL_LAYER, weights)], tag="1b")
        env = {**DIRECT, "HTTP_PROXY": proxy.url, "MODELHAUL_OLLAMA_REGISTRY": registry.url}
        env["OLLAMA_MODELS"] = str(tmp_path / "models")
        env["OLLAMA_HOST"] = "127.0.0.1:9"  # no daemon: modelhaul fetches from the registry
        got = await run(tmp_path / "home", "get", "ollama://gemma3:1b", **env)
        assert got.code == 0, got.stderr
        carried = [t for m, t in proxy.requests() if m == "GET"]
    assert any("/manifests/" in t for t in carried)
    assert any("/blobs/sha256:" in t for t in carried)
    assert any(t.endswith("/api/version") for t in carried)  # the daemon check too


async def test_https_goes_through_the_proxy_with_connect(tmp_path: Path) -> None:
    ca = PrivateCA(tmp_path / "ca")
    data = random.Random(2).randbytes(3 * MiB)
    async with (
        Tinyproxy(tmp_path / "proxy") as proxy,
        Origin({"m.bin": data}, tls=ca.server_context()) as origin,
    ):
        env = {**DIRECT, "HTTPS_PROXY": proxy.url, "REQUESTS_CA_BUNDLE": str(ca.bundle)}
        got = await run(tmp_path / "home", "get", origin.url("m.bin"), "-o", str(tmp_path / "m"))
        assert got.code == 1  # (no variables: our CA is not trusted, and not even tried)
        got = await run(
            tmp_path / "home2", "get", origin.url("m.bin"), "-o", str(tmp_path / "m"), **env
        )
        assert got.code == 0, got.stderr
    assert (tmp_path / "m").read_bytes() == data
    tunnels = [t for m, t in proxy.requests() if m == "CONNECT"]
    assert tunnels and set(tunnels) == {f"127.0.0.1:{origin.port}"}
    assert not [t for m, t in proxy.requests() if m != "CONNECT"]  # nothing in clear


async def test_proxy_credentials_come_from_its_url_and_a_refusal_is_one_clear_line(
    tmp_path: Path,
) -> None:
    data = b"behind a proxy that asks who you are\n" * 1000
    proxy = Tinyproxy(tmp_path / "proxy", user="alice", password="s3cret")
    async with proxy, Origin({"m.bin": data}) as origin:
        env = {**DIRECT, "HTTP_PROXY": proxy.url_with_credentials}
        got = await run(
            tmp_path / "h1", "get", origin.url("m.bin"), "-o", str(tmp_path / "m"), **env
        )
        assert got.code == 0, got.stderr
        refused = await run(
            tmp_path / "h2",
            "get",
            origin.url("m.bin"),
            "-o",
            str(tmp_path / "n"),
            **{**env, "HTTP_PROXY": proxy.url},
        )
    assert (tmp_path / "m").read_bytes() == data
    assert refused.code == 1
    assert "proxy refused" in refused.stderr and "407" in refused.stderr, refused.stderr
    assert "s3cret" not in got.stdout + got.stderr + refused.stdout + refused.stderr


async def test_credentials_for_a_plain_http_origin_are_never_handed_to_a_proxy(
    tmp_path: Path,
) -> None:
    async with Tinyproxy(tmp_path / "proxy") as proxy, Origin({"m.bin": b"x" * 1000}) as origin:
        env = {**DIRECT, "HTTP_PROXY": proxy.url}
        args = ("get", origin.url("m.bin"), "-o", str(tmp_path / "m"), "--token", "hf_tok")
        got = await run(tmp_path / "home", *args, **env)
    assert got.code == 1
    assert "in clear" in got.stderr and "NO_PROXY" in got.stderr, got.stderr
    assert proxy.requests() == []  # not even asked
    assert not [r for r in origin.log if "Authorization" in r.headers]


async def test_an_untrusted_certificate_fails_at_once_and_each_way_to_trust_it_works(
    tmp_path: Path,
) -> None:
    ca = PrivateCA(tmp_path / "ca")
    data = random.Random(3).randbytes(2 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    async with Origin({"m.bin": data}, tls=ca.server_context()) as origin:
        url = origin.url("m.bin")
        untrusted = await run(tmp_path / "h0", "get", url, "-o", str(tmp_path / "m0"), **DIRECT)
        assert untrusted.code == 1
        line = untrusted.stderr.strip().splitlines()[-1]
        assert "certificate of 127.0.0.1 is not trusted" in line, untrusted.stderr
        assert "--ca-certificate" in line and "Traceback" not in untrusted.stderr
        assert "attempts" not in untrusted.stderr  # not retried: no retry can fix it
        assert origin.log == []  # no request got through the handshake
        ways = [
            ({"REQUESTS_CA_BUNDLE": str(ca.bundle)}, ()),
            ({"SSL_CERT_FILE": str(ca.bundle)}, ()),
            ({}, ("--ca-certificate", str(ca.bundle))),
            ({}, ("--insecure",)),
        ]
        for i, (env, options) in enumerate(ways, 1):
            target = tmp_path / f"m{i}"
            got = await run(
                tmp_path / f"h{i}", "get", url, "-o", str(target), *options, **{**DIRECT, **env}
            )
            assert got.code == 0, (env, options, got.stderr)
            assert hashlib.sha256(target.read_bytes()).hexdigest() == digest
            assert ("certificates are not checked" in got.stderr) == ("--insecure" in options)


async def test_a_host_that_refuses_connections_fails_after_a_few_quick_tries(
    tmp_path: Path,
) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    got = await run(
        tmp_path / "home", "get", f"http://127.0.0.1:{port}/m.bin", "--dest", f"{tmp_path}/o/"
    )
    assert got.code == 1
    assert "after 4 attempts" in got.stderr, got.stderr  # 3 quick tries, not the full budget


async def test_a_proxy_the_environment_names_but_modelhaul_cannot_use_is_refused_when_used(
    tmp_path: Path,
) -> None:
    async with Origin({"m.bin": b"y" * 100}) as origin:
        env = {**DIRECT, "ALL_PROXY": "socks5://127.0.0.1:1080"}
        listed = await run(tmp_path / "home", "ls", **env)  # no request: nothing to refuse
        got = await run(
            tmp_path / "home", "get", origin.url("m.bin"), "-o", str(tmp_path / "m"), **env
        )
    assert listed.code == 0, listed.stderr
    assert got.code == 1 and "SOCKS" in got.stderr and "ALL_PROXY" in got.stderr, got.stderr
    assert origin.log == []  # never went straight out instead


async def test_a_ca_bundle_that_is_no_bundle_is_named_before_anything_is_asked(
    tmp_path: Path,
) -> None:
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("this is not a certificate\n")
    async with Origin({"m.bin": b"z" * 100}) as origin:
        env = {**DIRECT, "REQUESTS_CA_BUNDLE": str(not_pem)}
        got = await run(
            tmp_path / "home", "get", origin.url("m.bin"), "-o", str(tmp_path / "m"), **env
        )
        listed = await run(tmp_path / "home", "ls", **env)  # asks nothing: unaffected
    assert got.code == 2
    assert got.stderr.strip() == got.stderr.strip().splitlines()[0]  # one line
    assert f"REQUESTS_CA_BUNDLE: {not_pem} is not a readable CA bundle" in got.stderr
    assert origin.log == [] and listed.code == 0


async def test_local_address_is_where_the_connections_leave_from(tmp_path) -> None:
    """MODELHAUL_LOCAL_ADDRESS binds every outgoing connection to one address (each
    worker of a fleet on one machine can have its own loopback address)."""
    from clikit import run as cli

    from downloader.testing.origin import Origin

    data = bytes(range(256)) * 8192
    async with Origin({"m.bin": data}) as origin:
        got = await cli(
            tmp_path / "home", "get", origin.url("m.bin"), "-o", str(tmp_path / "m.bin"),
            MODELHAUL_LOCAL_ADDRESS="127.0.0.7",
        )  # fmt: skip
        assert got.code == 0, got.stderr
        assert origin.log and {r.client for r in origin.log} == {"127.0.0.7"}
    assert (tmp_path / "m.bin").read_bytes() == data
    bad = await cli(tmp_path / "home", "ls", MODELHAUL_LOCAL_ADDRESS="eth0")
    assert bad.code == 2 and "MODELHAUL_LOCAL_ADDRESS" in bad.stderr
