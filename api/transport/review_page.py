"""The game review page at `/`, from files built at install time.

`api/review_page` is a small browser application on the public GraphQL API (Apollo
Client 4, Lichess's chessground board). `make run` and `make test` install it from npm
and bundle it with esbuild into `api/review_page/dist`: `index.html`, and under
`review/` the script, the style sheet (pieces included) and the icon, their names
carrying a hash of their content. The API serves them itself, so the page works with
no internet. Before they are built, `/` leads to GraphiQL instead, as it did before
the page existed.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Scope

BUILT = Path(__file__).resolve().parent.parent / "review_page" / "dist"
ASSETS_PATH = "/review"
FALLBACK = "/graphql"

POLICY = "; ".join(
    [
        "default-src 'self'",
        # The pieces and the board are data: URIs in the style sheet.
        "img-src 'self' data:",
        # Chessground places pieces with style attributes, as Lichess's own policy allows.
        "style-src 'self' 'unsafe-inline'",
        # 'self' admits the page's own origin over ws: and wss: too.
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    ]
)
"""The page's Content-Security-Policy: its own files and its own API, nothing else."""

HEADERS = {
    "content-security-policy": POLICY,
    # The page names the files of the current build: ask for it again each time.
    "cache-control": "no-cache",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def built(directory: Path = BUILT) -> bool:
    """True when the page has been built (`make page`)."""
    return (directory / "index.html").is_file() and (directory / "review").is_dir()


def mount(app: FastAPI, directory: Path = BUILT) -> None:
    """Serve the page at `/` and its files under `/review`; without a build, redirect
    `/` to GraphiQL."""
    if not built(directory):

        @app.get("/", include_in_schema=False)
        async def graphiql() -> Response:
            return RedirectResponse(FALLBACK)

        return

    page = directory / "index.html"
    # The files' names change with their content: a browser may keep them.
    app.mount(ASSETS_PATH, ImmutableFiles(directory=directory / "review"), name="review-page")

    @app.get("/", include_in_schema=False)
    async def review_page() -> Response:
        return FileResponse(page, media_type="text/html; charset=utf-8", headers=HEADERS)


class ImmutableFiles(StaticFiles):
    """Static files a browser may keep for a year: their names carry their content's hash
    (the icon's does not, and a stale icon harms no one)."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["cache-control"] = "public, max-age=31536000, immutable"
        response.headers["x-content-type-options"] = "nosniff"
        return response
