"""CORS for the sites ``serve --cors-origin`` lists, and for no other.

The guard (``downloader.server.guard``) has already refused every request from an origin
that is not listed, preflights included, and without any CORS header: to a browser that is
a failed preflight or an unreadable answer, exactly as with no ``--cors-origin`` at all.
What reaches this module comes from a listed origin (or from no other site):

- a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered here, before
  the token check, because browsers never send credentials on one; it says which methods
  the path has and that ``Authorization`` (the bearer token) and ``Content-Type`` may be
  sent, and it opens nothing: the request that follows still needs the token;
- every answer to a listed origin, errors and event streams included, carries
  ``Access-Control-Allow-Origin`` with that origin, so its page can read it.

No ``Access-Control-Allow-Credentials``: the server uses no cookies, and the token travels
in a header the page sets itself (or ``?access_token=`` for ``EventSource``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web

from downloader.server.context import SITE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Headers a page may send: the token, the JSON body's type, and what EventSource sends
# when it reconnects.
ALLOWED_HEADERS = "Authorization, Content-Type, Last-Event-ID"
MAX_AGE = 600  # seconds a browser may keep a preflight's answer (Chromium caps it at 7200)


@web.middleware
async def preflight(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a listed origin's preflight; anything else goes on as before."""
    if (
        request.method != hdrs.METH_OPTIONS
        or hdrs.ACCESS_CONTROL_REQUEST_METHOD not in request.headers
        or request.app[SITE].listed_origin(request) is None
    ):
        return await handler(request)
    methods = _methods(request)
    if methods is None:
        return await handler(request)  # no such path: its 404, as for any other request
    headers = {
        hdrs.ACCESS_CONTROL_ALLOW_METHODS: ", ".join(sorted(methods)),
        hdrs.ACCESS_CONTROL_ALLOW_HEADERS: ALLOWED_HEADERS,
        hdrs.ACCESS_CONTROL_MAX_AGE: str(MAX_AGE),
    }
    # Chromium asks before a public site's page may reach a loopback or LAN address; the
    # user listed this site precisely so that it may.
    if request.headers.get("Access-Control-Request-Private-Network", "").lower() == "true":
        headers["Access-Control-Allow-Private-Network"] = "true"
    return web.Response(status=204, headers=headers)


def _methods(request: web.Request) -> set[str] | None:
    """The methods the request's path answers (HEAD with GET), or None if there is no
    such path. A path with no OPTIONS route resolves to a 405 that lists them."""
    error = request.match_info.http_exception
    if not isinstance(error, web.HTTPMethodNotAllowed):
        return None
    methods = set(error.allowed_methods)
    if hdrs.METH_GET in methods:
        methods.add(hdrs.METH_HEAD)
    return methods


async def allow_origin(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare``: let a listed origin read this answer. With any origin
    listed, answers differ by ``Origin``, so caches are told (``Vary``)."""
    site = request.app[SITE]
    if not site.origins:
        return
    vary = response.headers.get(hdrs.VARY, "")
    if "origin" not in (part.strip().lower() for part in vary.split(",")):
        response.headers[hdrs.VARY] = f"{vary}, Origin" if vary else "Origin"
    origin = site.listed_origin(request)
    if origin is not None:
        response.headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin
