"""The GraphQL face of the service: validation at the edge, the LISTEN fan-out, errors."""
