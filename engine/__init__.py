"""The Stockfish worker: claims queued analyses, runs the engine, writes results back."""
