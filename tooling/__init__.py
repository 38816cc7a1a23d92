"""Tools that set up a machine for the service: the embedded PostgreSQL server."""
