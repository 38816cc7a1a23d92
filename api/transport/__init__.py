"""How requests reach the schema: GraphQL over HTTP and WebSockets, uvicorn, the limits
and middleware around them, persisted queries and the GraphiQL page."""
