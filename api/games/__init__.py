"""Games: reading a game, naming its opening, reviewing its moves, the GraphQL face."""
