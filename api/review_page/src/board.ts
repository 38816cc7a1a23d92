// The board (Lichess's chessground, view only) and the evaluation bar beside it.

import { Chessground } from "@lichess-org/chessground";
import type { Api } from "@lichess-org/chessground/api";
import type { DrawShape } from "@lichess-org/chessground/draw";
import type { Key } from "@lichess-org/chessground/types";
import { Chess } from "chessops/chess";
import { makeFen, parseFen } from "chessops/fen";
import { parseSan } from "chessops/san";
import { makeUci, parseUci } from "chessops/util";

import { turn } from "./format";

export interface View {
  /** The position, a full FEN. */
  fen: string;
  /** The move that led to it, in UCI ("e2e4"), highlighted. */
  lastMove?: string | null;
  /** Arrows: moves in UCI with a brush (green: best move; blue: other lines). */
  arrows?: { uci: string; brush: "green" | "paleBlue" | "paleGreen" }[];
  /** A judgment's mark on the square a move went to, as Lichess shows it. */
  glyph?: { uci: string; text: string; color: string } | null;
  /** White's winning chances for the bar, 0..100; null: unknown yet. */
  winPercent?: number | null;
  /** The evaluation, for the bar's tooltip ("+0.35", "#3"). */
  score?: string;
}

export class Board {
  private readonly ground: Api;

  constructor(
    private readonly element: HTMLElement,
    private readonly bar: HTMLElement,
  ) {
    this.ground = Chessground(element, {
      viewOnly: true,
      coordinates: true,
      animation: { enabled: true, duration: 180 },
      drawable: { enabled: false, visible: true },
    });
    // Chessground measures the board when asked: tell it when the page's size changes.
    new ResizeObserver(() => document.body.dispatchEvent(new Event("chessground.resize"))).observe(
      element,
    );
  }

  show(view: View): void {
    const lastMove = view.lastMove ? squares(view.lastMove) : undefined;
    const checked = isCheck(view.fen);
    this.ground.set({
      fen: view.fen,
      turnColor: turn(view.fen),
      lastMove,
      check: checked ? turn(view.fen) : false,
      drawable: {
        autoShapes: [...(view.arrows ?? []).map(arrow), ...(view.glyph ? [badge(view.glyph)] : [])],
      },
    });
    // The position shown, for people's tools and for the tests.
    this.element.dataset.fen = view.fen;
    this.showBar(view.winPercent ?? null, view.score ?? "");
  }

  flip(): void {
    this.ground.toggleOrientation();
    this.bar.classList.toggle("flipped", this.ground.state.orientation === "black");
  }

  private showBar(win: number | null, label: string): void {
    const fill = this.bar.querySelector<HTMLElement>(".eval-fill");
    if (!fill) return;
    this.bar.classList.toggle("unknown", win === null);
    fill.style.height = `${win ?? 50}%`;
    this.bar.title =
      win === null ? "Not analysed yet" : `${label} · White's winning chances ${win.toFixed(0)}%`;
  }
}

function squares(uci: string): Key[] {
  return [uci.slice(0, 2) as Key, uci.slice(2, 4) as Key];
}

function arrow({ uci, brush }: { uci: string; brush: string }): DrawShape {
  const [orig, dest] = squares(uci);
  return { orig, dest, brush };
}

/** A round badge with the glyph ("??") at the top right of the move's square. */
function badge({ uci, text, color }: { uci: string; text: string; color: string }): DrawShape {
  const html =
    `<g transform="translate(66 -12) scale(0.44)">` +
    `<circle cx="50" cy="50" r="48" fill="${color}" stroke="#000" stroke-opacity="0.35" stroke-width="4"/>` +
    `<text x="50" y="50" dy="0.36em" text-anchor="middle" font-family="sans-serif" font-weight="700" ` +
    `font-size="${text.length > 1 ? 50 : 62}" fill="#fff">${text}</text></g>`;
  return { orig: uci.slice(2, 4) as Key, customSvg: { html } };
}

// --- Positions, with chessops (Lichess's rules library).

function position(fen: string): Chess | null {
  const setup = parseFen(fen);
  if (setup.isErr) return null;
  const chess = Chess.fromSetup(setup.value);
  return chess.isErr ? null : chess.value;
}

function isCheck(fen: string): boolean {
  return position(fen)?.isCheck() ?? false;
}

/** The FEN after playing `uci` in `fen` (the position after a game's last move). */
export function play(fen: string, uci: string): string {
  const chess = position(fen);
  const move = parseUci(uci);
  if (!chess || !move) return fen;
  chess.play(move);
  return makeFen(chess.toSetup());
}

/** The positions along a line of SAN moves from `fen`, each with its move in UCI;
 * stops at the first move that does not read. */
export function line(fen: string, sans: string[]): { fen: string; uci: string }[] {
  const chess = position(fen);
  const steps: { fen: string; uci: string }[] = [];
  if (!chess) return steps;
  for (const san of sans) {
    const move = parseSan(chess, san);
    if (!move) break;
    chess.play(move);
    steps.push({ fen: makeFen(chess.toSetup()), uci: makeUci(move) });
  }
  return steps;
}
