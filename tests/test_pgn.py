"""Reading games (`api.games.pgn`): PGN as people paste it, or a start and moves; every
refusal names its field and what is wrong. Pure functions, no server needed."""

from __future__ import annotations

from collections.abc import Callable

import chess
import pytest

from api.errors import BadUserInputError
from api.games.pgn import ParsedGame, from_moves, parse_pgn

MOST = 600

RUY_LOPEZ = ["e4", "e5", "Nf3", "Nc6", "Bb5", "a6", "Ba4", "Nf6", "O-O", "Be7"]

PASTED = (
    "\ufeff"
    '  [Event "Casual game"]\r\n'
    '[Site "Lichess \\"Arena\\" \\\\ 1"]\r\n'
    '\t[White "Alice"]  \r\n'
    '[Black "Bob"]\r\n'
    '[Result "1-0"]\r\n'
    "\r\n"
    "% an escape line\r\n"
    "{A comment before the first move.} 1.e4 {[%clk 0:03:00]} e5 $1\r\n"
    "2. Nf3!? Nc6 ; to the end of the line (1. d4 {\r\n"
    "3.Bb5 (3. Bc4 Bc5 (3... Nf6 4. Ng5) 4. c3) 3... a6?! {a comment\r\n"
    "over two lines ( ) } 4. Ba4 Nf6 5. 0-0 $14\r\n"
    "\r\n"
    "5… Be7 1-0   \r\n"
    "\r\n"
)


def refusal(call: Callable[..., object], *args: object, **kwargs: object) -> BadUserInputError:
    with pytest.raises(BadUserInputError) as caught:
        call(*args, **kwargs)
    return caught.value


def pgn_refusal(text: str, max_plies: int = MOST) -> str:
    """The message of the refusal of `text`, checked to be under the field `pgn`."""
    error = refusal(parse_pgn, text, max_plies=max_plies)
    assert error.extensions == {"code": "BAD_USER_INPUT", "field": "pgn"}
    return str(error)


def sans(game: ParsedGame) -> list[str]:
    return [move.san for move in game.moves]


# What is read


def test_reads_a_pgn_as_pasted_with_every_feature() -> None:
    game = parse_pgn(PASTED, max_plies=MOST)
    assert game.headers == [
        ("Event", "Casual game"),
        ("Site", 'Lichess "Arena" \\ 1'),
        ("White", "Alice"),
        ("Black", "Bob"),
        ("Result", "1-0"),
    ]
    assert sans(game) == RUY_LOPEZ
    assert game.initial_fen == chess.STARTING_FEN
    board = chess.Board()
    for san in RUY_LOPEZ:
        board.push_san(san)
    assert game.final_fen == board.fen()


def test_each_move_knows_its_place_and_its_positions() -> None:
    game = parse_pgn("1. e4 e5 2. Nf3 Nc6 3. Bb5", max_plies=MOST)
    board = chess.Board()
    for ply, move in enumerate(game.moves, start=1):
        assert move.ply == ply
        assert move.move_number == (ply + 1) // 2
        assert move.white == (ply % 2 == 1)
        assert move.fen_before == board.fen()
        assert move.uci == board.parse_san(move.san).uci()
        board.push_uci(move.uci)
        assert move.epd_after == board.epd()
    assert game.epds() == [chess.Board().epd()] + [move.epd_after for move in game.moves]


def test_the_en_passant_square_is_kept_only_where_a_capture_is_legal() -> None:
    first, *_, last = parse_pgn("1. e4 d5 2. e5 f5", max_plies=MOST).moves
    assert first.epd_after.endswith(" b KQkq -")  # no black pawn can take on e3
    assert last.epd_after.endswith(" w KQkq f6")  # exf6 is legal


@pytest.mark.parametrize(
    "movetext",
    [
        "1.e4 e5 2.Nf3",
        "1. e4 e5 2. Nf3",
        "1. e4 1... e5 2. Nf3",
        "1.e4 1...e5 2.Nf3",
        "1 . e4 1 ... e5 2 . Nf3",
        "1. e4 1…e5 2. Nf3",
        "1 e4 e5 2 Nf3",
        "e4 e5 Nf3",
        "1.\ne4\ne5\n2.\nNf3",
    ],
)
def test_move_numbers_with_or_without_spaces(movetext: str) -> None:
    assert sans(parse_pgn(movetext, max_plies=MOST)) == ["e4", "e5", "Nf3"]


CASTLING = "4k3/8/8/8/8/8/8/R3K2R w KQ - 0 1"


@pytest.mark.parametrize(
    ("fen", "castling", "uci", "san"),
    [
        (CASTLING, "O-O", "e1g1", "O-O"),
        (CASTLING, "0-0", "e1g1", "O-O"),
        (CASTLING, "O-O-O", "e1c1", "O-O-O"),
        (CASTLING, "0-0-0", "e1c1", "O-O-O"),
        ("5k2/8/8/8/8/8/8/R3K2R w KQ - 0 1", "0-0+", "e1g1", "O-O+"),
        ("3k4/8/8/8/8/8/8/R3K2R w KQ - 0 1", "O-O-O+!", "e1c1", "O-O-O+"),
    ],
)
def test_castling_written_with_letters_or_zeros(
    fen: str, castling: str, uci: str, san: str
) -> None:
    (move,) = parse_pgn(f'[FEN "{fen}"]\n\n1. {castling}', max_plies=MOST).moves
    assert (move.uci, move.san) == (uci, san)


@pytest.mark.parametrize("result", ["1-0", "0-1", "1/2-1/2", "*", ""])
def test_a_trailing_result_or_none(result: str) -> None:
    assert sans(parse_pgn(f"1. e4 e5 {result}", max_plies=MOST)) == ["e4", "e5"]


def test_annotations_nags_and_checks_on_moves() -> None:
    game = parse_pgn("1. f3? e5 2. g4?? $4 Qh4#! 0-1", max_plies=MOST)
    assert sans(game) == ["f3", "e5", "g4", "Qh4#"]


def test_variations_are_read_for_their_form_but_never_played() -> None:
    # The variation's moves are illegal: they are not played, so they do no harm.
    text = "1. e4 (1. Ke2?? (1. Qh5 Qh4) Kxe1) 1... e5 (1... Ke7 {(}) 2. Nf3"
    assert sans(parse_pgn(text, max_plies=MOST)) == ["e4", "e5", "Nf3"]


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_line_endings_blank_lines_and_whitespace(ending: str) -> None:
    text = ending.join(['  [White "A"]', "", "", "  1. e4", "", "e5  ", "", "2. Nf3  ", "  "])
    game = parse_pgn(text, max_plies=MOST)
    assert game.headers == [("White", "A")]
    assert sans(game) == ["e4", "e5", "Nf3"]


def test_a_game_from_a_fen_via_setup_and_fen_headers() -> None:
    fen = "r1bqkbnr/pppp1ppp/2n5/4p3/4P3/5N2/PPPP1PPP/RNBQKB1R w KQkq - 2 3"
    game = parse_pgn(f'[SetUp "1"]\n[FEN "{fen}"]\n\n3. Bb5 a6 4. Ba4', max_plies=MOST)
    assert game.initial_fen == fen
    assert [(move.ply, move.move_number, move.white) for move in game.moves] == [
        (1, 3, True),
        (2, 3, False),
        (3, 4, True),
    ]
    assert game.moves[0].fen_before == fen


def test_a_fen_start_with_black_to_move_and_no_move_counters() -> None:
    text = '[Variant "From Position"]\n[FEN "4k3/8/8/8/8/8/4P3/4K3 b - -"]\n\n1... Kd7 2. e4'
    game = parse_pgn(text, max_plies=MOST)
    assert game.initial_fen == "4k3/8/8/8/8/8/4P3/4K3 b - - 0 1"
    first, second = game.moves
    assert (first.ply, first.move_number, first.white, first.san) == (1, 1, False, "Kd7")
    assert (second.ply, second.move_number, second.white, second.san) == (2, 2, True, "e4")


@pytest.mark.parametrize("variant", ["Standard", "chess", "From Position", "Normal"])
def test_variant_headers_naming_standard_chess_are_fine(variant: str) -> None:
    assert sans(parse_pgn(f'[Variant "{variant}"]\n\n1. d4', max_plies=MOST)) == ["d4"]


@pytest.mark.parametrize(
    "text", ['[Event "Nothing yet"]\n[White "A"]', '[White "A"]\n\n*', "*", "{just a comment}"]
)
def test_a_game_with_no_moves(text: str) -> None:
    game = parse_pgn(text, max_plies=MOST)
    assert game.moves == []
    assert game.final_fen == game.initial_fen == chess.STARTING_FEN


def test_exactly_max_plies_is_fine() -> None:
    assert len(parse_pgn("1. e4 e5 2. Nf3 Nc6", max_plies=4).moves) == 4


def test_a_promotion() -> None:
    game = parse_pgn('[FEN "8/4P1k1/8/8/8/8/8/4K3 w - - 0 1"]\n1. e8=Q Kf6 2. Qe5+', max_plies=MOST)
    assert [move.uci for move in game.moves] == ["e7e8q", "g7f6", "e8e5"]
    assert sans(game) == ["e8=Q", "Kf6", "Qe5+"]


# What is refused


def test_an_empty_pgn() -> None:
    assert pgn_refusal(" \r\n\t") == "pgn: must not be empty"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("1. e4 e5 2. Xf3", 'line 1: "Xf3" is not a move'),
        ("1. e4\ne5\n2. nf3", 'line 3: "nf3" is not a move'),
        ("hello world", 'line 1: "hello" is not a move'),
        ("1. e4 e5 2. Ke9", 'line 1: "Ke9" is not a move'),
        ('[White "A"]\n\n1. e4 {open comment', "line 3: a comment opened here is not closed"),
        ("1. e4 e5 }", "line 1: a } closes no comment"),
        ("1. e4 (1. d4 d5\n2. c4 e5", "line 1: a variation opened here is not closed"),
        ("1. e4 e5) 2. Nf3", "line 1: a ) closes no variation"),
        ('[White "A"\n1. e4', 'line 1: not a header like [White "Name"]: [White "A"'),
        ('[White "A"]\n[White "B"]', 'line 2: the header "White" is given twice'),
        ("1. e4 e5 1-0 0-1", 'line 1: a second result "0-1" after "1-0"'),
    ],
)
def test_a_pgn_that_does_not_parse(text: str, named: str) -> None:
    assert named in pgn_refusal(text)


def test_an_illegal_move_names_the_ply_the_move_and_the_position() -> None:
    message = pgn_refusal("1. e4 e5 2. Nf3 Nc6 3. Bb5 a6 4. Ba4 Nf6 5. O-O Be7 6. d4 Nf3")
    fen = "r1bqk2r/1pppbppp/p1n2n2/4p3/B2PP3/5N2/PPP2PPP/RNBQ1RK1 b kq - 0 6"
    assert message == f"pgn: ply 12 (6... Nf3): illegal move in position {fen}"


def test_an_illegal_move_by_white_is_numbered_as_in_a_pgn() -> None:
    message = pgn_refusal("1. e4 e5 2. Ke3")
    assert message.startswith("pgn: ply 3 (2. Ke3): illegal move in position ")


def test_a_move_after_checkmate_says_the_game_is_over() -> None:
    message = pgn_refusal("1. f3 e5 2. g4 Qh4# 3. a3")
    assert "ply 5 (3. a3): illegal move (the game is over: White is checkmated)" in message


def test_an_ambiguous_move_names_the_moves_it_could_be() -> None:
    message = pgn_refusal('[FEN "R7/8/7k/8/8/8/8/R3K3 w - - 0 1"]\n\n1. Ra4')
    assert message.startswith("pgn: ply 1 (1. Ra4): ambiguous move (it could be R1a4 or R8a4)")


def test_a_null_move() -> None:
    assert "ply 3 (2. --): a null move" in pgn_refusal("1. e4 e5 2. -- Nc6")


def test_moves_after_the_75_move_rule_ended_the_game() -> None:
    text = '[FEN "4k3/8/8/8/8/8/8/4K3 w - - 149 90"]\n\n90. Kd1 Kd7'
    assert "ply 2 (90... Kd7): the game was already over" in pgn_refusal(text)


def test_more_plies_than_the_limit() -> None:
    movetext = " ".join(["Nf3 Nf6 Ng1 Ng8"] * 203)  # 812 plies
    assert pgn_refusal(movetext, max_plies=600) == "pgn: 600 plies at most, the game has 812"


def test_two_games_one_after_the_other() -> None:
    text = '[Event "One"]\n\n1. e4 e5 1-0\n\n[Event "Two"]\n\n1. d4 d5 0-1\n'
    assert pgn_refusal(text) == (
        "pgn: more than one game: headers at line 5 follow moves; send one game at a time"
    )


def test_two_games_without_headers() -> None:
    message = pgn_refusal("1. e4 e5 1-0\n1. d4 d5 *")
    assert message.startswith('pgn: more than one game: moves follow the result "1-0" (line 1)')


@pytest.mark.parametrize("variant", ["Chess960", "Crazyhouse", "King of the Hill", "Fischerandom"])
def test_a_variant_game_is_refused_by_name(variant: str) -> None:
    message = pgn_refusal(f'[Variant "{variant}"]\n[FEN "{chess.STARTING_FEN}"]\n\n1. e4')
    assert message == (
        "pgn: Chess960 and other variants are not supported"
        f' (the Variant header says "{variant}"; only standard chess is analysed)'
    )


def test_a_chess960_start_position_is_refused() -> None:
    fen = "bqnb1rkr/pp3ppp/3ppn2/2p5/5P2/P2P4/NPP1P1PP/BQ1BNRKR w HFhf - 2 9"
    message = pgn_refusal(f'[SetUp "1"]\n[FEN "{fen}"]\n\n9. g3')
    assert message.startswith("pgn: the FEN header: Chess960 and other variants are not supported")


@pytest.mark.parametrize(
    ("fen", "reason"),
    [
        ("8/8/8/8/8/8/8/8 w - - 0 1", "impossible position: White has no king"),
        ("4k3/8/8/8/8/8/8/4K2r b - - 0 1", "the side not to move is in check"),
        ("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR", "not a valid FEN"),
        ("", "must not be empty"),
    ],
)
def test_an_impossible_start_position(fen: str, reason: str) -> None:
    message = pgn_refusal(f'[SetUp "1"]\n[FEN "{fen}"]\n\n1. e4')
    assert message.startswith("pgn: the FEN header: ")
    assert reason in message


def test_setup_without_a_fen() -> None:
    message = pgn_refusal('[SetUp "1"]\n\n1. e4')
    assert message == 'pgn: the SetUp header is "1" but no FEN header gives the position'


# A start position and moves


def test_moves_in_uci_in_san_or_both() -> None:
    uci = ["e2e4", "e7e5", "g1f3", "b8c6", "f1b5", "a7a6", "b5a4", "g8f6", "e1g1", "f8e7"]
    mixed = [*RUY_LOPEZ[:4], *uci[4:8], "0-0", "Be7"]
    games = [from_moves(None, moves, max_plies=MOST) for moves in (uci, RUY_LOPEZ, mixed)]
    assert [sans(game) for game in games] == [RUY_LOPEZ] * 3
    assert [move.uci for move in games[1].moves] == uci
    assert games[0] == games[1] == games[2]
    assert games[0].headers == []


@pytest.mark.parametrize(
    "start", [None, "startpos", chess.STARTING_FEN, f"  {chess.STARTING_FEN} "]
)
def test_the_standard_start_however_given(start: str | None) -> None:
    game = from_moves(start, ["e4"], max_plies=MOST)
    assert game.initial_fen == chess.STARTING_FEN
    assert game.moves[0].fen_before == chess.STARTING_FEN


def test_moves_from_a_fen() -> None:
    fen = "8/4P1k1/8/8/8/8/8/4K3 w - - 0 60"
    game = from_moves(fen, ["e7e8q", "Kf6", "Qe5+"], max_plies=MOST)
    assert game.initial_fen == fen
    assert sans(game) == ["e8=Q", "Kf6", "Qe5+"]
    assert [(move.ply, move.move_number) for move in game.moves] == [(1, 60), (2, 60), (3, 61)]


def test_no_moves() -> None:
    game = from_moves("startpos", [], max_plies=MOST)
    assert (game.moves, game.final_fen) == ([], chess.STARTING_FEN)


@pytest.mark.parametrize(
    ("moves", "message"),
    [
        (["e4", "e5", "Nf3", "Nf3"], "moves: ply 4 (2... Nf3): illegal move in position "),
        (["e2e4", "e7e5", "e1g1"], "moves: ply 3 (2. e1g1): illegal move in position "),
        (["e4", "e5", "1. Nf3"], "moves: ply 3 (2. 1. Nf3): not a move in SAN or UCI"),
        (["e4", "banana"], "moves: ply 2 (1... banana): not a move in SAN or UCI"),
        (["e4", "  "], 'moves: ply 2 (1... ""): an empty move'),
        (["e4", "0000"], "moves: ply 2 (1... 0000): a null move"),
    ],
)
def test_bad_moves_are_named_by_ply(moves: list[str], message: str) -> None:
    error = refusal(from_moves, None, moves, max_plies=MOST)
    assert error.extensions["field"] == "moves"
    assert str(error).startswith(message)


def test_too_many_moves() -> None:
    error = refusal(from_moves, None, ["Nf3", "Nf6", "Ng1", "Ng8"] * 203, max_plies=600)
    assert str(error) == "moves: 600 plies at most, the game has 812"


@pytest.mark.parametrize(
    ("fen", "reason"),
    [
        ("", "must not be empty"),
        ("not a fen", "not a valid FEN"),
        ("4k3/8/8/8/8/8/8/4K2r b - - 0 1", "the side not to move is in check"),
        ("rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w HAha - 0 1", "Chess960"),
    ],
)
def test_an_impossible_initial_fen(fen: str, reason: str) -> None:
    error = refusal(from_moves, fen, ["e4"], max_plies=MOST)
    assert error.extensions == {"code": "BAD_USER_INPUT", "field": "initialFen"}
    assert str(error).startswith("initialFen: ")
    assert reason in str(error)
