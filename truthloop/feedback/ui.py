"""The built-in web UI at `/ui/`: the static files of `truthloop/ui`, shipped in the package.

No build step and no CDN: the page works offline inside a cluster. The files (< 250 KB together)
are read once when the app is built and held in memory with their gzip form and an ETag, so a
page load that finds them unchanged costs a 304 per file. Every file is `Cache-Control: no-cache`
(revalidated on each load: an upgraded service is seen at once, file names carry no hash). Reads
need no token, like the JSON API the page reads.
"""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent / "ui"
INDEX = "index.html"
CONTENT_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html"}

HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Scripts and data from the service only; uPlot sizes its elements with inline styles.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "frame-ancestors 'none'"
    ),
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    content_type: str


def load(root: Path = ROOT) -> dict[str, Asset]:
    """Every file under `root` by its path relative to it (`pages/monitor.js`)."""
    assets: dict[str, Asset] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        body = path.read_bytes()
        kind = CONTENT_TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "text/plain"
        etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
        assets[path.relative_to(root).as_posix()] = Asset(
            body, gzip.compress(body, mtime=0), etag, kind
        )
    return assets


def routes(assets: dict[str, Asset]) -> list[web.RouteDef]:
    async def redirect(request: web.Request) -> web.StreamResponse:
        raise web.HTTPPermanentRedirect("/ui/")

    async def serve(request: web.Request) -> web.StreamResponse:
        asset = assets.get(request.match_info["path"] or INDEX)
        if asset is None:
            raise web.HTTPNotFound(text=f"no file {request.match_info['path']!r} in the UI")
        headers = {**HEADERS, "ETag": asset.etag, "Vary": "Accept-Encoding"}
        if asset.etag in request.headers.get("If-None-Match", ""):
            return web.Response(status=304, headers=headers)
        body = asset.body
        if "gzip" in request.headers.get("Accept-Encoding", ""):
            body, headers["Content-Encoding"] = asset.gzipped, "gzip"
        charset = "utf-8" if asset.content_type.startswith("text/") else None
        return web.Response(
            body=body, headers=headers, content_type=asset.content_type, charset=charset
        )

    return [web.get("/ui", redirect), web.get("/ui/{path:.*}", serve)]
