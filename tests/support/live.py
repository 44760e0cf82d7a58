"""The app on a real socket (uvicorn, with the options ``fature serve`` gives it): for the
tests whose clients speak real HTTP or WebSocket (gql, graphql-http, graphql-ws, a browser)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from app import create_app
from cli import server_options
from db.settings import Settings


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def uvicorn_serving(settings: Settings, robust_url: str, log_level: str = "info") -> AsyncIterator[str]:
    """``http://127.0.0.1:PORT`` while the app serves ``robust_url`` there."""
    port = free_port()
    app = create_app(settings, robust_url=robust_url, start_scheduler=False)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level, lifespan="on",
                            **server_options(settings))
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        assert not task.done(), "uvicorn did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task
