"""GraphiQL that works without internet.

Strawberry's GraphiQL page loads the IDE from a CDN, so it is blank on an offline or
locked-down network. When the IDE's files are installed (`npm ci` in `api/ide_assets`,
which `make run` and `make test` do), the API serves them itself and its own page uses
them; otherwise Strawberry's CDN page is served as before.

A key typed into the IDE's headers editor (`{"Authorization": "Bearer <key>"}`) goes
with every operation, subscriptions over the WebSocket included.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

ASSETS = Path(__file__).resolve().parent.parent / "ide_assets" / "node_modules"
STATIC_PATH = "/graphiql/static"
FILES = {
    # URL directory: directory inside the installed packages
    "graphiql": "graphiql",
    "react": "react/umd",
    "react-dom": "react-dom/umd",
    "graphql-ws": "graphql-ws/umd",
}
NEEDED = [
    "graphiql/graphiql.min.js",
    "graphiql/graphiql.min.css",
    "react/umd/react.production.min.js",
    "react-dom/umd/react-dom.production.min.js",
    "graphql-ws/umd/graphql-ws.min.js",
]

DEFAULT_QUERY = """# The reference position: Black mates in two. Run it, then subscribe to the id.
mutation Submit {
  submitAnalysis(input: {fen: "8/8/6P1/4R3/8/6k1/2r5/6K1 b - - 0 1", numMovesToReturn: 2}) {
    id
    status
  }
}
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Chess analysis · GraphiQL</title>
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <link rel="stylesheet" href="{static}/graphiql/graphiql.min.css">
  <style>html, body, #graphiql {{ height: 100%; margin: 0; }}</style>
</head>
<body>
  <div id="graphiql">Loading GraphiQL…</div>
  <script src="{static}/react/react.production.min.js"></script>
  <script src="{static}/react-dom/react-dom.production.min.js"></script>
  <script src="{static}/graphql-ws/graphql-ws.min.js"></script>
  <script src="{static}/graphiql/graphiql.min.js"></script>
  <script>
    const url = new URL(location.pathname, location.href).href;
    // The headers editor's Authorization goes with every operation: as a header over
    // HTTP, and as the connection_init payload of the WebSocket subscriptions use (one
    // lazy connection per key).
    const fetchers = new Map();
    const fetcher = (params, options) => {{
      const headers = (options && options.headers) || {{}};
      const authorization = String(headers.Authorization || headers.authorization || "");
      if (!fetchers.has(authorization)) {{
        const wsClient = graphqlWs.createClient({{
          url: url.replace(/^http/, "ws"),
          lazy: true,
          connectionParams: {{ authorization }},
        }});
        fetchers.set(authorization, GraphiQL.createFetcher({{ url, wsClient }}));
      }}
      return fetchers.get(authorization)(params, options);
    }};
    const params = new URLSearchParams(location.search);
    ReactDOM.createRoot(document.getElementById("graphiql")).render(
      React.createElement(GraphiQL, {{
        fetcher,
        defaultQuery: {default_query},
        query: params.get("query") || undefined,
        variables: params.get("variables") || undefined,
        defaultEditorToolsVisibility: true,
      }}),
    );
  </script>
</body>
</html>
"""


def installed(assets: Path = ASSETS) -> bool:
    """True when every file the page needs is installed."""
    return all((assets / name).is_file() for name in NEEDED)


def page() -> str:
    """The GraphiQL page that loads the IDE from this server."""
    return PAGE.format(static=STATIC_PATH, default_query=json.dumps(DEFAULT_QUERY))


def mount(app: FastAPI, assets: Path = ASSETS) -> None:
    """Serve the IDE's files (only the ones the page loads) under /graphiql/static."""
    for url, directory in FILES.items():
        app.mount(
            f"{STATIC_PATH}/{url}",
            StaticFiles(directory=assets / directory),
            name=f"graphiql-{url}",
        )
