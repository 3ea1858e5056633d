"""How a peer is written down: its token (any printable characters) survives every round
trip through Settings and the options, and goes nowhere but its own peer."""

from __future__ import annotations

import pytest

from downloader.errors import SpecError
from downloader.manager.tunables import check_peers, peers_for
from downloader.peers import parse_peer, parse_peers
from downloader.settings import Settings


@pytest.mark.parametrize("token", ["ab/cd", "a:b", "x@y", "100%", "p%2Fq", "~!$&'()*+,;="])
def test_a_token_with_url_characters_comes_back_as_itself(token: str) -> None:
    from urllib.parse import quote

    given = f"http://{quote(token, safe='')}@peer.lan:8000"
    peer = parse_peer(given)
    assert (peer.base, peer.token) == ("http://peer.lan:8000", token)
    again = parse_peer(peer.spelled)
    assert (again.base, again.token) == (peer.base, token)
    settings = Settings.from_env({"MODELHAUL_PEERS": given})
    [through] = peers_for({}, settings)
    assert (through.base, through.token) == ("http://peer.lan:8000", token)
    assert through.blob_url("0" * 64) == f"http://peer.lan:8000/api/v1/blobs/sha256/{'0' * 64}"


def test_a_task_keeps_peers_without_tokens_and_the_process_adds_its_own() -> None:
    assert check_peers(["http://a:1/", "http://a:1", "http://b:2"]) == ["http://a:1", "http://b:2"]
    with pytest.raises(SpecError, match="never stored"):
        check_peers(["http://t@a:1"])
    settings = Settings(peers=("http://tok@a:1",))
    peers = peers_for({"peers": ["http://a:1", "http://c:3"]}, settings)
    assert [(p.base, p.token) for p in peers] == [("http://a:1", "tok"), ("http://c:3", None)]


def test_an_ipv6_peer_keeps_its_brackets() -> None:
    [peer] = parse_peers("http://[::1]:8000/")
    assert peer.base == "http://[::1]:8000"
