"""Whole games through the API: a PGN in, Lichess's review out, followed as its positions
finish; bad games refused with nothing stored."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import chess
import chess.engine
import chess.pgn
import httpx
import pytest

from api.games import review
from engine import analysis
from engine.settings import EngineSettings
from tests.conftest import ApiFactory, Server, WorkerFactory
from tests.graphql_client import post, subscribe_graphql_ws, subscribe_transport_ws

GAME_FIELDS = """
  id status error initialFen headers { name value } opening { eco name }
  progress { done total }
  plies {
    ply moveNumber color san uci fenBefore
    eval { centipawnScore mateScore winPercent }
    bestMove bestMoveSan bestLineSan judgment { name comment } accuracy centipawnLoss
  }
  white { accuracy acpl inaccuracies mistakes blunders }
  black { accuracy acpl inaccuracies mistakes blunders }
"""
SUBMIT_GAME = (
    "mutation Submit($input: SubmitGameAnalysisInput!) { submitGameAnalysis(input: $input) {"
    + GAME_FIELDS
    + "} }"
)
GET_GAME = "query Get($id: ID!) { gameAnalysis(id: $id) {" + GAME_FIELDS + "} }"
FOLLOW = "subscription Follow($id: ID!) { gameAnalysisProgress(id: $id) {" + GAME_FIELDS + "} }"
CANCEL_GAME = "mutation Cancel($id: ID!) { cancelGameAnalysis(id: $id) { status } }"

# A short game with a blunder: 1. e4 e5 2. Qh5 Nc6 3. Bc4 Nf6?? 4. Qxf7# (Scholar's mate).
SCHOLARS_MATE = """[Event "Casual game"]
[White "Anna"]
[Black "Ben"]
[Result "1-0"]

1. e4 {the king's pawn} e5 2. Qh5 Nc6 (2... g6 3. Qxe5+) 3.Bc4 Nf6?? $4 4. Qxf7# 1-0
"""
ITALIAN = "1. e4 e5 2. Nf3 Nc6 3. Bc4 Bc5 4. c3 Nf6 5. d3 d6 6. O-O O-O 7. Re1 a6 8. a4 h6 *"
DEPTH = 10


async def submit_game(server: Server, **fields: Any) -> dict[str, Any]:
    body = await post(server.http_url, SUBMIT_GAME, {"input": fields})
    assert "errors" not in body, body
    game: dict[str, Any] = body["data"]["submitGameAnalysis"]
    return game


async def refused(server: Server, **fields: Any) -> dict[str, Any]:
    body = await post(server.http_url, SUBMIT_GAME, {"input": fields})
    assert body["data"] is None, body
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    return dict(error)


async def test_a_game_is_stored_at_once_with_its_plies(api: Server) -> None:
    game = await submit_game(api, pgn=SCHOLARS_MATE, depthLimit=DEPTH)
    assert game["status"] in ("QUEUED", "RUNNING")
    assert [p["san"] for p in game["plies"]] == ["e4", "e5", "Qh5", "Nc6", "Bc4", "Nf6", "Qxf7#"]
    assert [p["color"] for p in game["plies"][:2]] == ["WHITE", "BLACK"]
    assert game["plies"][6]["uci"] == "h5f7" and game["plies"][6]["moveNumber"] == 4
    assert {"name": "White", "value": "Anna"} in game["headers"]
    assert game["opening"] == {"eco": "C20", "name": "King's Pawn Game: Wayward Queen Attack"}
    # 8 positions; the last, checkmate, needs no engine and is done at once
    assert game["progress"] == {"done": 1, "total": 8}
    assert game["white"] is None and game["plies"][0]["eval"] is None


async def test_a_game_with_no_moves_is_done_at_once(api: Server) -> None:
    game = await submit_game(api, pgn='[Event "?"]\n\n*')
    assert game["status"] == "DONE" and game["plies"] == []
    assert game["progress"] == {"done": 0, "total": 0}


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"pgn": "1. e4 e5 2. Ke3"}, "pgn", "ply 3"),
        ({"pgn": "1. e4 e5 2. Nf4"}, "pgn", "Nf4"),
        ({"pgn": "1. e4 e5 1-0\n\n1. d4 d5 0-1"}, "pgn", "game"),
        ({"pgn": '[Variant "Chess960"]\n\n1. e4 *'}, "pgn", "960"),
        ({"moves": ["e2e4", "e7e5", "e1e3"]}, "moves", "ply 3"),
        ({"pgn": "1. e4", "moves": ["e2e4"]}, "pgn", "either"),
        ({}, "pgn", "either"),
    ],
)
async def test_bad_games_are_refused_and_nothing_is_stored(
    api: Server, pool: asyncpg.Pool, fields: dict[str, Any], field: str, words: str
) -> None:
    error = await refused(api, **fields)
    assert error["extensions"]["field"] == field
    assert words in error["message"], error["message"]
    assert await pool.fetchval("SELECT count(*) FROM games") == 0
    assert await pool.fetchval("SELECT count(*) FROM analyses") == 0


async def test_more_plies_than_the_setting_are_refused(start_api: ApiFactory) -> None:
    server = await start_api(max_game_plies=4)
    error = await refused(server, pgn=ITALIAN)
    assert "4 plies at most" in error["message"], error["message"]


@pytest.mark.parametrize("follow", [subscribe_transport_ws, subscribe_graphql_ws])
async def test_the_review_streams_position_by_position(
    api: Server, start_worker: WorkerFactory, follow: Any
) -> None:
    await start_worker(slots=2)
    game = await submit_game(api, pgn=ITALIAN, depthLimit=DEPTH)
    messages = await follow(api.ws_url, FOLLOW, {"id": game["id"]}, 120)
    events = [m["payload"]["data"]["gameAnalysisProgress"] for m in messages[:-1]]
    assert messages[-1]["type"] == "complete"
    done = [event["progress"]["done"] for event in events]
    assert done == sorted(done) and len(done) >= 2 and done[-1] == 17
    assert events[-1]["status"] == "DONE"
    assert events[-1]["white"] is not None and events[-1]["black"] is not None
    assert all(p["eval"] is not None for p in events[-1]["plies"])


async def test_over_http_multipart(api: Server, start_worker: WorkerFactory) -> None:
    await start_worker(slots=2)
    game = await submit_game(api, pgn=SCHOLARS_MATE, depthLimit=DEPTH)
    async with (
        httpx.AsyncClient(timeout=60, headers=api.headers) as client,
        client.stream(
            "POST",
            api.http_url,
            json={"query": FOLLOW, "variables": {"id": game["id"]}},
            headers={"accept": 'multipart/mixed;boundary="graphql";subscriptionSpec=1.0'},
        ) as response,
    ):
        text = (await response.aread()).decode()
    parts = [part for part in text.split("--graphql") if '"payload"' in part]
    events = [json.loads(p[p.index("{") :])["payload"]["data"] for p in parts]
    assert events[-1]["gameAnalysisProgress"]["status"] == "DONE"


async def bare_review(path: Path, pgn_text: str, depth: int) -> review.Review:
    """The review a bare python-chess loop and Lichess's formulas give: one thread, the
    same hash, a new game per position, the same depth."""
    game = chess.pgn.read_game(__import__("io").StringIO(pgn_text))
    assert game is not None
    board = game.board()
    moves: list[review.Move] = []
    boards = [board.copy()]
    for ply, move in enumerate(game.mainline_moves(), start=1):
        moves.append(
            review.Move(
                ply, board.fullmove_number, board.turn, move.uci(), board.san(move), board.fen()
            )
        )
        board.push(move)
        boards.append(board.copy())
    transport, engine = await chess.engine.popen_uci(str(path))
    try:
        await engine.configure(
            {"Threads": 1, "Hash": EngineSettings().hash_mb, "UCI_ShowWDL": True}
        )
        positions = []
        for position in boards:
            if position.is_checkmate() or position.is_stalemate():
                positions.append(
                    review.Position(
                        None, None, None, (), position.is_checkmate(), position.is_stalemate()
                    )
                )
                continue
            infos = await engine.analyse(
                position, chess.engine.Limit(depth=depth), multipv=1, game=uuid.uuid4()
            )
            [best] = analysis.lines_from_infos(position, infos)
            positions.append(
                review.Position(
                    score=review.Score(best.centipawn_score, best.mate_score),
                    best_move_uci=best.pv[0],
                    best_move_san=best.pv_san[0],
                    best_line_san=best.pv_san,
                )
            )
    finally:
        await engine.quit()
        transport.close()
    return review.review(moves, positions)


@pytest.mark.parametrize("pgn_text", [ITALIAN, SCHOLARS_MATE], ids=["italian", "mate"])
async def test_every_number_is_what_a_bare_engine_and_lichess_formulas_give(
    api: Server, start_worker: WorkerFactory, stockfish: Path, pgn_text: str
) -> None:
    await start_worker(slots=2)
    game = await submit_game(api, pgn=pgn_text, depthLimit=DEPTH, timeLimit=30.0)
    messages = await subscribe_transport_ws(api.ws_url, FOLLOW, {"id": game["id"]}, 120)
    served = messages[-2]["payload"]["data"]["gameAnalysisProgress"]
    assert served["status"] == "DONE"
    expected = await bare_review(stockfish, pgn_text, DEPTH)
    for ply, want in zip(served["plies"], expected.plies, strict=True):
        after = want.eval_after
        assert ply["eval"] == (
            None
            if after is None or want.win_percent_after is None
            else {
                "centipawnScore": after.centipawns,
                "mateScore": after.mate,
                "winPercent": round(want.win_percent_after, 2),
            }
        ), ply["san"]
        assert ply["bestMove"] == want.best_move_uci, ply["san"]
        assert ply["bestMoveSan"] == want.best_move_san
        assert ply["bestLineSan"] == (
            None if want.best_line_san is None else list(want.best_line_san)
        )
        judged = want.judgment
        assert ply["judgment"] == (
            None if judged is None else {"name": judged.name, "comment": judged.comment}
        ), ply["san"]
        assert ply["accuracy"] == (None if want.accuracy is None else round(want.accuracy, 2))
        assert ply["centipawnLoss"] == want.centipawn_loss
    for color, summary in (("white", expected.white), ("black", expected.black)):
        assert served[color] == (
            None
            if summary is None
            else {
                "accuracy": round(summary.accuracy, 2),
                "acpl": summary.acpl,
                "inaccuracies": summary.inaccuracies,
                "mistakes": summary.mistakes,
                "blunders": summary.blunders,
            }
        )
    if pgn_text is SCHOLARS_MATE:
        mating = served["plies"][-1]
        assert mating["eval"] is None and mating["judgment"] is None
        blunder = served["plies"][5]
        assert blunder["san"] == "Nf6" and blunder["judgment"]["name"] == "BLUNDER"
        assert blunder["judgment"]["comment"].endswith("was best."), blunder


async def test_a_game_submitted_again_costs_no_engine_time(
    api: Server, start_worker: WorkerFactory
) -> None:
    worker = await start_worker(slots=2)
    first = await submit_game(api, pgn=ITALIAN, depthLimit=8)
    await subscribe_transport_ws(api.ws_url, FOLLOW, {"id": first["id"]}, 120)
    claimed = worker.metrics.registry.get_sample_value("worker_jobs_claimed_total")
    again = await submit_game(api, pgn=ITALIAN, depthLimit=8)
    assert again["status"] == "DONE" and again["progress"] == {"done": 17, "total": 17}
    assert again["white"] is not None
    assert worker.metrics.registry.get_sample_value("worker_jobs_claimed_total") == claimed


async def test_cancel_a_game(api: Server, pool: asyncpg.Pool) -> None:
    game = await submit_game(api, pgn=ITALIAN, depthLimit=20)
    body = await post(api.http_url, CANCEL_GAME, {"id": game["id"]})
    assert body["data"]["cancelGameAnalysis"]["status"] == "CANCELED"
    open_positions = await pool.fetchval(
        "SELECT count(*) FROM analyses WHERE game_id = $1 AND status = 'queued'",
        uuid.UUID(game["id"]),
    )
    assert open_positions == 0
    read = await post(api.http_url, GET_GAME, {"id": game["id"]})
    assert read["data"]["gameAnalysis"]["status"] == "CANCELED"


async def test_another_tenants_game_reads_as_unknown(api: Server) -> None:
    game = await submit_game(api, pgn=SCHOLARS_MATE)
    mine = await post(api.http_url, GET_GAME, {"id": game["id"]})
    assert mine["data"]["gameAnalysis"]["id"] == game["id"]
    theirs = await post(api.http_url, GET_GAME, {"id": game["id"]}, key=api.admin_key)
    assert theirs["data"]["gameAnalysis"]["id"] == game["id"], "an admin sees every game"
    listed = await post(api.http_url, "{ gameAnalyses(first: 5) { edges { node { id status } } } }")
    assert [e["node"]["id"] for e in listed["data"]["gameAnalyses"]["edges"]] == [game["id"]]
