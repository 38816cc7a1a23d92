// How numbers and moves are written on the page (as Lichess writes them).

import type { Eval, JudgmentName, Ply } from "./api";

/** Lichess's Win% of a centipawn score, White's view (api/schema.graphql, Line.winPercent). */
export function winPercent(centipawns: number): number {
  const clamped = Math.max(-1000, Math.min(1000, centipawns));
  return 50 + 50 * (2 / (1 + Math.exp(-0.00368208 * clamped)) - 1);
}

/** The evaluation before the first move: lila's Eval.initial, +0.15 (docs/games.md). */
export const INITIAL_WIN_PERCENT = winPercent(15);

type Score = Pick<Eval, "centipawnScore" | "mateScore">;

/** "+0.35", "−1.20", "#3", "#−2" (White's view). */
export function score({ centipawnScore, mateScore }: Score): string {
  if (mateScore !== null) return `#${mateScore < 0 ? "−" : ""}${Math.abs(mateScore)}`;
  if (centipawnScore === null) return "";
  const pawns = centipawnScore / 100;
  return `${pawns > 0 ? "+" : pawns < 0 ? "−" : ""}${Math.abs(pawns).toFixed(2)}`;
}

/** The mark Lichess puts after a judged move. */
export const GLYPHS: Record<JudgmentName, string> = {
  INACCURACY: "?!",
  MISTAKE: "?",
  BLUNDER: "??",
};

export const JUDGMENT_NAMES: Record<JudgmentName, string> = {
  INACCURACY: "Inaccuracy",
  MISTAKE: "Mistake",
  BLUNDER: "Blunder",
};

/** "12." for White's move, "12…" for Black's. */
export function moveNumber(ply: Pick<Ply, "moveNumber" | "color">): string {
  return ply.color === "WHITE" ? `${ply.moveNumber}.` : `${ply.moveNumber}…`;
}

/**
 * A line of SAN moves numbered as people read them, starting with the move of `ply`
 * (Black's first gets "12…"): [["12…", "Nf6"], ["13.", "Bc4"], ["", "O-O"], …].
 */
export function numbered(
  sans: string[],
  moveNumberAt: number,
  whiteFirst: boolean,
): { label: string; san: string }[] {
  let number = moveNumberAt;
  let white = whiteFirst;
  return sans.map((san, index) => {
    const label = white ? `${number}.` : index === 0 ? `${number}…` : "";
    if (!white) number += 1;
    white = !white;
    return { label, san };
  });
}

/** The side to move in a FEN. */
export function turn(fen: string): "white" | "black" {
  return fen.split(" ")[1] === "b" ? "black" : "white";
}

/** 1234567 → "1.2 M". */
export function count(nodes: number): string {
  if (nodes >= 1e9) return `${(nodes / 1e9).toFixed(1)} G`;
  if (nodes >= 1e6) return `${(nodes / 1e6).toFixed(1)} M`;
  if (nodes >= 1e3) return `${(nodes / 1e3).toFixed(0)} k`;
  return String(nodes);
}

/** Seconds as "in 12 s", "in 2 min 5 s". */
export function inSeconds(seconds: number): string {
  const whole = Math.max(1, Math.ceil(seconds));
  if (whole < 60) return `${whole} s`;
  const minutes = Math.floor(whole / 60);
  const rest = whole % 60;
  return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
}
