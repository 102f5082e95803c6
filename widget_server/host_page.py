"""The example partner site of `examples/host-page/`, served by `serve` on a
second port (`EXAMPLE_HOST_PAGE_PORT`), hence on another origin than the
widget, the way partners embed it. `{{WIDGET_URL}}` in its files becomes
`PUBLIC_URL`. It sends a strict CSP of its own, to show that the widget needs
nothing more than its origin allowed for scripts, requests and frames.
"""

from __future__ import annotations

import asyncio
import mimetypes
import sys
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from .bundled import data_dir
from .framing import host_policy
from .settings import Settings

HOST_PAGE_DIR = data_dir("host_page")
TEXT_SUFFIXES = {".html", ".css", ".js", ".svg", ".txt"}
SERVED_SUFFIXES = TEXT_SUFFIXES | {".png", ".ico", ".webp"}


def create_host_app(widget_url: str, directory: Path = HOST_PAGE_DIR) -> Starlette:
    """A static site whose pages load the widget from `widget_url`."""
    root = directory.resolve()

    async def page(request: Request) -> Response:
        name = request.path_params["path"] or "index.html"
        path = (root / name).resolve()
        if not path.is_relative_to(root) or path.suffix not in SERVED_SUFFIXES or not path.is_file():
            return PlainTextResponse("Page introuvable.", status_code=404)
        media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        headers = {"Cache-Control": "no-cache"}
        if path.suffix in TEXT_SUFFIXES:
            body = path.read_text(encoding="utf-8").replace("{{WIDGET_URL}}", widget_url).encode()
            media_type += "; charset=utf-8"
        else:
            body = path.read_bytes()
        if path.suffix == ".html":
            headers["Content-Security-Policy"] = host_policy(widget_url)
        return Response(body, media_type=media_type, headers=headers)

    return Starlette(routes=[Route("/{path:path}", page)])


def host_page_url(settings: Settings) -> str:
    host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "", "localhost") else settings.host
    return f"http://{host}:{settings.example_host_page_port}"


async def serve(settings: Settings, main: uvicorn.Server) -> None:
    """Run the service, and the example site beside it unless its port is 0.

    Ctrl-C reaches both: each uvicorn server hands a caught signal on to the
    one started before it. The example site stops with the service; if its port
    is taken, the service runs without it.
    """
    side: asyncio.Task[None] | None = None
    if settings.example_host_page_port:
        server = uvicorn.Server(
            uvicorn.Config(
                create_host_app(settings.public_url),
                host=settings.host,
                port=settings.example_host_page_port,
                lifespan="off",
                log_config=None,  # logs go to the root handler, as the service's do
                log_level=settings.log_level.lower(),
                server_header=False,
            )
        )
        side = asyncio.create_task(_serve_example(server, host_page_url(settings), settings.public_url))
    try:
        await main.serve()
    finally:
        if side is not None:
            server.should_exit = True
            await side


async def _serve_example(server: uvicorn.Server, url: str, widget_url: str) -> None:
    print(f"Example partner site on {url} (the widget on {widget_url})", file=sys.stderr)
    try:
        await server.serve()
    except SystemExit:  # uvicorn exits when the port is taken
        print(f"Example partner site not started: {url} is not available.", file=sys.stderr)
