"""How requests reach the network: which proxy each goes through, and which certificates are
trusted. One frozen value, made once from the environment and the user's options, handed
to the one HTTP session (``engine.http.open_session``), so that every request modelhaul
makes (file bytes, probes, Hub and Ollama metadata) takes the same way out.

Proxies are read as curl, requests and huggingface_hub read them: ``http_proxy``,
``https_proxy``, ``all_proxy`` and ``no_proxy``, lower case first, then upper case (but not
``HTTP_PROXY`` in a CGI script, where a request header could set it: "httpoxy"). A proxy the
user names (``--proxy``, ``MODELHAUL_PROXY``) serves every scheme; ``no_proxy`` still
bypasses it, as it bypasses curl's ``--proxy``. Only HTTP proxies: HTTPS origins are reached
through ``CONNECT``, so the proxy sees a host name and encrypted bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:  # ssl and urllib.request load when a session is made, not for --help
    import ssl

# Variables naming a CA bundle, most specific first (requests' own, then OpenSSL's).
CA_VARIABLES = ("MODELHAUL_CA_CERTIFICATE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")


@dataclass(frozen=True, slots=True)
class Proxy:
    """One HTTP proxy: where it is, and its own credentials (from its URL's user info)."""

    url: str  # http://host:port, without credentials
    user: str | None = None
    password: str | None = None
    # Set for a proxy the environment names but modelhaul cannot use (SOCKS, a typo): a
    # request that would go through it fails with this, rather than going straight out.
    refused: str | None = None

    @classmethod
    def parse(cls, value: str, where: str) -> Proxy:
        """``http://[user:pass@]host[:port]`` (a bare ``host:port`` is taken as http);
        ``ValueError`` naming ``where`` for anything else."""
        text = value.strip()
        if "://" not in text:
            text = f"http://{text}"
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as e:
            raise ValueError(f"{where}: {value!r:.200} is not a proxy URL ({e})") from None
        scheme = parts.scheme.lower()
        if scheme.startswith("socks"):
            raise ValueError(
                f"{where}: {value!r:.200} is a SOCKS proxy; modelhaul speaks to HTTP proxies only"
            )
        if scheme != "http":
            raise ValueError(
                f"{where}: {value!r:.200} is not an http:// proxy (HTTPS origins are reached "
                "through an HTTP proxy with CONNECT)"
            )
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"{where}: {value!r:.200} is not a proxy URL (http://host:port)")
        host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
        where_to = f"http://{host}:{port or 80}"
        user = unquote(parts.username) if parts.username is not None else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(where_to, user, password)

    def __repr__(self) -> str:  # never the password, in a log or a traceback
        return f"Proxy({self.url!r}, user={self.user!r})"


@dataclass(frozen=True)
class ProxyRoutes:
    """Which proxy a URL goes through (None: straight to it)."""

    http: Proxy | None = None
    https: Proxy | None = None
    no_proxy: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str], explicit: str | None = None) -> ProxyRoutes:
        """The routes the environment sets, or ``explicit`` for every scheme."""
        bypass = _variable(env, "no_proxy") or ""
        if explicit:
            proxy = Proxy.parse(explicit, "--proxy")
            return cls(proxy, proxy, bypass)
        found: dict[str, Proxy | None] = {}
        for scheme in ("http", "https", "all"):
            name, value = _named(env, f"{scheme}_proxy")
            try:
                found[scheme] = Proxy.parse(value, name) if value else None
            except ValueError as e:
                # Other programs read these variables too: refused when used, not at start.
                found[scheme] = Proxy("", refused=str(e))
        fallback = found["all"]
        return cls(found["http"] or fallback, found["https"] or fallback, bypass)

    def for_url(self, scheme: str, host: str) -> Proxy | None:
        """The proxy for a request to ``scheme://host``."""
        proxy = self.https if scheme.lower() in ("https", "wss") else self.http
        if proxy is None:
            return None
        from urllib.request import proxy_bypass_environment

        if self.no_proxy and proxy_bypass_environment(host, {"no": self.no_proxy}):
            return None
        return proxy


@dataclass(frozen=True)
class NetworkConfig:
    """Proxies and trust for the one HTTP session."""

    proxies: ProxyRoutes = field(default_factory=ProxyRoutes)
    ca_bundle: Path | None = None  # trusted beside the system's CAs
    ca_origin: str = ""  # where ca_bundle was named, for the messages
    insecure: bool = False  # no certificate checks at all (loud, never the default)
    # The address outgoing connections leave from (MODELHAUL_LOCAL_ADDRESS), as aria2's and
    # curl's --interface: a multi-homed host's route, or one address per worker.
    local_address: str | None = None

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str],
        *,
        proxy: str | None = None,
        ca_certificate: str | Path | None = None,
        insecure: bool = False,
    ) -> NetworkConfig:
        """From the environment and the user's options (which win). ``ValueError`` naming
        the option for a ``proxy`` that is no HTTP proxy URL."""
        proxies = ProxyRoutes.from_env(env, proxy or env.get("MODELHAUL_PROXY") or None)
        origin, bundle = "--ca-certificate", ca_certificate
        if not bundle:
            origin, bundle = next(((v, env[v]) for v in CA_VARIABLES if env.get(v)), ("", None))
        path = Path(bundle).expanduser() if bundle else None
        return cls(proxies, path, origin, insecure, _local_address(env))

    def ssl(self) -> ssl.SSLContext | bool:
        """What the session's connector verifies with: False when ``insecure``; a context
        with the bundle added; True (aiohttp's default context) otherwise. Reads the small
        bundle file (blocking, once per session); ``ValueError`` naming it and where it
        was named if it cannot be read or holds no certificate."""
        if self.insecure:
            return False
        if self.ca_bundle is None:
            return True
        return _context_with(self.ca_bundle, self.ca_origin)


def _context_with(path: Path, origin: str) -> ssl.SSLContext:
    import ssl

    context = ssl.create_default_context()  # the system's CAs, hostname checks on
    try:
        context.load_verify_locations(cafile=str(path))
    except FileNotFoundError:
        raise ValueError(f"{origin}: {path} does not exist") from None
    except (OSError, ssl.SSLError) as e:
        raise ValueError(f"{origin}: {path} is not a readable CA bundle (PEM): {e}") from None
    return context


def _named(env: Mapping[str, str], name: str) -> tuple[str, str | None]:
    """``name`` as the environment has it, lower case first; ``HTTP_PROXY`` is ignored in a
    CGI request (``REQUEST_METHOD`` set), where a client's ``Proxy:`` header becomes it."""
    if env.get(name):
        return name, env[name]
    upper = name.upper()
    if upper == "HTTP_PROXY" and "REQUEST_METHOD" in env:
        return upper, None
    return upper, env.get(upper) or None


def _variable(env: Mapping[str, str], name: str) -> str | None:
    return _named(env, name)[1]


def _local_address(env: Mapping[str, str]) -> str | None:
    """MODELHAUL_LOCAL_ADDRESS: an IP address of this machine (``ValueError`` naming the
    variable for anything else)."""
    raw = env.get("MODELHAUL_LOCAL_ADDRESS", "").strip()
    if not raw:
        return None
    import ipaddress  # only when one is set: most runs never need it

    try:
        return str(ipaddress.ip_address(raw.strip("[]")))
    except ValueError:
        raise ValueError(
            f"MODELHAUL_LOCAL_ADDRESS: {raw[:60]!r} is not an IP address of this machine"
        ) from None
