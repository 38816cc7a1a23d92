"""What each game field does: read the game, check the limits, store it and its
positions, follow it as its positions finish."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator

import strawberry

from api import cursors, validation
from api.context import ResolverInfo
from api.errors import BadUserInputError, NotFoundError, refusal
from api.games import openings, pgn
from api.games.types import GameAnalysis, GameAnalysisEdge, SubmitGameAnalysisInput
from api.resolvers import refusal as queue_refusal
from api.subscriptions import through_outage
from api.types import AnalysisStatus, PageInfo
from db import games, models
from db.submissions import Refusal

EVENTS_PER_SECOND = 4
"""At most this many events a second per game subscription (a busy game's positions
finish faster; each event carries every position finished so far)."""
RECHECK_SECONDS = 10.0
"""A followed game is read again at least this often, should a notification be lost."""


def read_game(info: ResolverInfo, input: SubmitGameAnalysisInput) -> pgn.ParsedGame:
    """The game the input describes, or BAD_USER_INPUT naming what is wrong."""
    most = info.context.settings.max_game_plies
    if (input.pgn is None) == (input.moves is None):
        raise BadUserInputError("pgn", "give either pgn, or moves (with initialFen if need be)")
    if input.pgn is not None:
        if input.initial_fen is not None:
            raise BadUserInputError("initialFen", "goes with moves; a PGN says its start itself")
        return pgn.parse_pgn(input.pgn, max_plies=most)
    return pgn.from_moves(input.initial_fen, input.moves or [], max_plies=most)


def new_game(info: ResolverInfo, input: SubmitGameAnalysisInput) -> games.NewGame:
    """The game and a request for each of its positions, checked like single positions."""
    problems = validation.limit_problems(
        input.num_moves_to_return,
        input.time_limit,
        input.depth_limit,
        input.nodes_limit,
        info.context.limits,
    )
    try:
        parsed = read_game(info, input)
    except BadUserInputError as problem:
        problems.insert(0, problem)
    if problems:
        raise refusal(problems)
    # Each position's analysis: the start and after each move (none without moves).
    fens = [move.fen_before for move in parsed.moves] + [parsed.final_fen] * bool(parsed.moves)
    positions = [
        validation.validate_submission(
            fen,
            input.num_moves_to_return,
            input.time_limit,
            input.depth_limit,
            info.context.limits,
            nodes_limit=input.nodes_limit,
        )
        for fen in fens
    ]
    named = openings.opening_of(parsed.epds())
    return games.NewGame(
        headers=list(parsed.headers),
        initial_fen=parsed.initial_fen,
        moves=[
            {"uci": move.uci, "san": move.san, "fen_before": move.fen_before}
            for move in parsed.moves
        ],
        positions=positions,
        num_moves_to_return=input.num_moves_to_return,
        time_limit=input.time_limit,
        depth_limit=input.depth_limit,
        nodes_limit=input.nodes_limit,
        opening=None if named is None else (named.eco, named.name),
    )


async def submit_game_analysis(info: ResolverInfo, input: SubmitGameAnalysisInput) -> GameAnalysis:
    """Store a game and queue each of its positions; returns the game at once."""
    game = new_game(info, input)
    settings = info.context.settings
    stored = await games.submit(
        info.context.pool, game, tenant=info.context.tenant, max_queued=settings.max_queued
    )
    if isinstance(stored, Refusal):
        raise queue_refusal(stored, settings.max_queued, settings.queue_full_retry_after)
    return GameAnalysis.from_game(stored)


async def game_analysis(info: ResolverInfo, id: strawberry.ID) -> GameAnalysis | None:
    """The game with this id; null when there is none the caller may see."""
    game_id = validation.parse_id(id)
    found = await games.get(info.context.pool, game_id, viewer=info.context.tenant)
    return None if found is None else GameAnalysis.from_game(found)


async def cancel_game_analysis(info: ResolverInfo, id: strawberry.ID) -> GameAnalysis:
    """Cancel a game: CANCELED at once; its queued positions canceled, its running ones
    stopped (a position another request shares goes on for it)."""
    game_id = validation.parse_id(id)
    context = info.context
    found = await games.cancel(context.database, context.pool, game_id, viewer=context.tenant)
    if found is None:
        raise NotFoundError(f"no game analysis with id {game_id}")
    return GameAnalysis.from_game(found)


@strawberry.type(description="A page of game analyses, newest first.")
class GameAnalysisConnection:
    edges: list[GameAnalysisEdge]
    page_info: PageInfo


async def game_analyses(
    info: ResolverInfo,
    first: int = 20,
    after: str | None = None,
    status: AnalysisStatus | None = None,
) -> GameAnalysisConnection:
    """The caller's games (an admin's: everyone's), newest first, optionally of one status.
    Anonymous games are never listed."""
    limit = info.context.settings.max_page_size
    if not 1 <= first <= limit:
        raise BadUserInputError("first", f"must be between 1 and {limit}")
    position = None if after is None else cursors.decode(after)
    viewer = info.context.tenant
    found: list[games.Game] = []
    if not viewer.is_anonymous:
        owner = None if viewer.is_admin else viewer.id
        start = None if position is None else (position.created_at, position.id)
        # The status is read from the positions: filtered here, a page at a time.
        while len(found) <= first:
            page = await games.newest(info.context.pool, first + 1, start, tenant_id=owner)
            wanted = models.AnalysisStatus(status.value) if status else None
            found += [game for game in page if wanted is None or game.status is wanted]
            if len(page) <= first:
                break
            start = (page[-1].created_at, page[-1].id)
    edges = [
        GameAnalysisEdge(node=GameAnalysis.from_game(game), cursor=cursors.encode(game))
        for game in found[:first]
    ]
    return GameAnalysisConnection(
        edges=edges,
        page_info=PageInfo.of([edge.cursor for edge in edges], len(found) > first, after),
    )


async def game_analysis_progress(
    info: ResolverInfo, id: strawberry.ID
) -> AsyncGenerator[GameAnalysis, None]:
    """Emit the game now, again each time positions finish (at most a few times a
    second), then once finished, and complete."""
    game_id = validation.parse_id(id)
    context = info.context
    with context.hub.waiter(game_id) as waiter:
        # Registered before the first read: no position's end slips in between.
        game = await games.get(context.pool, game_id, viewer=context.tenant)
        if game is None:
            raise NotFoundError(f"no game analysis with id {game_id}")
        loop = asyncio.get_running_loop()
        while not game.status.is_terminal:
            sent = loop.time()
            yield GameAnalysis.from_game(game)
            done = game.done
            while game.done == done and not game.status.is_terminal:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wait(), RECHECK_SECONDS)
                # Positions that finish together ride on one event.
                await asyncio.sleep(max(0.0, sent + 1 / EVENTS_PER_SECOND - loop.time()))
                game = (
                    await through_outage(
                        lambda: games.get(context.pool, game_id, viewer=context.tenant)
                    )
                    or game
                )
    yield GameAnalysis.from_game(game)
