// One position's search as it deepens: the engine's lines with their score, Win% and
// win/draw/loss chances, redrawn at each event of `analysisProgress`.

import type { Line, Progress } from "./api";
import { Board, line } from "./board";
import { fill, h } from "./dom";
import { count, numbered, score, turn } from "./format";

const GAME_OVER: Record<string, string> = {
  CHECKMATE: "Checkmate: there is no move to analyse.",
  STALEMATE: "Stalemate: there is no move to analyse.",
  INSUFFICIENT_MATERIAL: "Drawn: neither side can mate.",
  SEVENTYFIVE_MOVES: "Drawn by the 75-move rule.",
};

export class PositionView {
  private progress: Progress | null = null;
  /** The best score at each depth seen so far, oldest first. */
  private depths: { depth: number; score: string }[] = [];
  /** A position along a line being looked at: `step` moves into line `rank`. */
  private variation: { rank: number; step: number } | null = null;

  constructor(
    private readonly board: Board,
    private readonly content: HTMLElement,
    private readonly panel: HTMLElement,
  ) {}

  get id(): string | null {
    return this.progress?.analysis.id ?? null;
  }

  update(progress: Progress): void {
    if (progress.analysis.id !== this.progress?.analysis.id) {
      this.depths = [];
      this.variation = null;
    }
    this.progress = progress;
    const best = progress.lines[0];
    // The finished analysis's lines can be an iteration deeper than the last progress.
    const depth = Math.max(progress.depth ?? 0, best?.depth ?? 0);
    if (best && depth && this.depths.at(-1)?.depth !== depth) {
      this.depths.push({ depth, score: score(best) });
    }
    this.render();
  }

  /** Arrow keys: through the line being looked at (the best line from its start). */
  step(delta: number): void {
    const rank = this.variation?.rank ?? 1;
    const next = (this.variation?.step ?? -1) + delta;
    const length = this.lineOf(rank)?.pvSan.length ?? 0;
    if (next < 0) this.variation = null;
    else if (next < length) this.variation = { rank, step: next };
    this.render();
  }

  first(): void {
    this.variation = null;
    this.render();
  }

  last(): void {
    const length = this.lineOf(this.variation?.rank ?? 1)?.pvSan.length ?? 0;
    if (length) this.variation = { rank: this.variation?.rank ?? 1, step: length - 1 };
    this.render();
  }

  back(): void {
    this.first();
  }

  private lineOf(rank: number): Line | undefined {
    return this.progress?.lines.find((found) => found.rank === rank);
  }

  private render(): void {
    const progress = this.progress;
    if (!progress) return;
    const { analysis, lines } = progress;
    const fen = analysis.fen;
    const chosen = this.variation && this.lineOf(this.variation.rank);
    const steps = chosen ? line(fen, chosen.pvSan) : [];
    const here = this.variation ? steps[this.variation.step] : undefined;
    const best = lines[0];
    this.board.show({
      fen: here?.fen ?? fen,
      lastMove: here?.uci,
      // The best move green, the other lines' first moves blue (as Lichess draws them).
      arrows: here
        ? []
        : lines
            .filter((found) => found.pv[0])
            .map((found) => ({
              uci: found.pv[0] as string,
              brush: found.rank === 1 ? "green" : "paleBlue",
            })),
      winPercent: best?.winPercent ?? null,
      score: best ? score(best) : "",
    });

    fill(
      this.content,
      h("div", { class: "card game-head" }, this.header(progress)),
      h(
        "div",
        { class: "card lines-card" },
        lines.length
          ? h(
              "ol",
              { class: "lines" },
              lines.map((found) => this.lineRow(found, fen)),
            )
          : h("p", { class: "empty" }, this.waiting(progress)),
      ),
    );
    fill(this.panel, this.panelFor(progress));
  }

  private header(progress: Progress): (Node | null)[] {
    const { analysis } = progress;
    const depth = Math.max(progress.depth ?? 0, progress.lines[0]?.depth ?? 0);
    const facts = [
      depth ? `depth ${depth}` : null,
      progress.nodes ? `${count(progress.nodes)} nodes` : null,
      progress.elapsed ? `${progress.elapsed.toFixed(1)} s` : null,
      analysis.cached ? "from the cache" : null,
      analysis.engine,
    ].filter(Boolean);
    const running = analysis.status === "RUNNING" || analysis.status === "QUEUED";
    return [
      h(
        "div",
        { class: "players" },
        h(
          "span",
          { class: "player" },
          `Position · ${turn(analysis.fen) === "white" ? "White" : "Black"} to move`,
        ),
      ),
      h("div", { class: "event fen" }, analysis.fen),
      h(
        "div",
        {
          class: `progress ${analysis.status.toLowerCase()}`,
          "data-status": analysis.status,
          "data-depth": progress.depth ?? 0,
        },
        h(
          "span",
          { class: `status-chip ${analysis.status.toLowerCase()}` },
          running ? "searching" : analysis.status.toLowerCase(),
        ),
        h("span", { class: "progress-text" }, facts.join(" · ")),
      ),
      this.depths.length > 1
        ? h(
            "div",
            { class: "depths", "aria-label": "The best score at each depth" },
            this.depths
              .slice(-8)
              .map((seen) =>
                h(
                  "span",
                  { class: "depth-chip" },
                  h("small", {}, `d${seen.depth}`),
                  ` ${seen.score}`,
                ),
              ),
          )
        : null,
      analysis.error ? h("p", { class: "error" }, analysis.error) : null,
    ];
  }

  private waiting(progress: Progress): string {
    const { analysis } = progress;
    if (analysis.gameOver && GAME_OVER[analysis.gameOver] && analysis.status === "DONE") {
      return GAME_OVER[analysis.gameOver] as string;
    }
    if (analysis.status === "QUEUED") return "Waiting for a worker…";
    if (analysis.status === "RUNNING") return "The engine is starting…";
    return "No lines.";
  }

  private lineRow(found: Line, fen: string): Node {
    const wdl = found.wdl;
    const moves = numbered(found.pvSan, moveNumberOf(fen), turn(fen) === "white");
    const white = found.winPercent >= 50;
    return h(
      "li",
      { class: "line-row", "data-rank": found.rank },
      h(
        "div",
        { class: "line-numbers" },
        h("span", { class: `score-chip ${white ? "white" : "black"}` }, score(found)),
        h("span", { class: "win" }, `Win ${found.winPercent.toFixed(0)}%`),
        wdl ? wdlBar(wdl) : null,
        h("span", { class: "line-depth" }, `d${found.depth}`),
      ),
      h(
        "div",
        { class: "line" },
        moves.map((move, step) =>
          h(
            "button",
            {
              type: "button",
              class: `line-move${this.variation?.rank === found.rank && this.variation.step === step ? " active" : ""}`,
              onclick: () => {
                this.variation = { rank: found.rank, step };
                this.render();
              },
            },
            move.label && h("span", { class: "line-number" }, move.label),
            move.san,
          ),
        ),
      ),
    );
  }

  private panelFor(progress: Progress): (Node | null)[] {
    const best = progress.lines[0];
    if (this.variation) {
      const chosen = this.lineOf(this.variation.rank);
      const moves = chosen
        ? numbered(
            chosen.pvSan,
            moveNumberOf(progress.analysis.fen),
            turn(progress.analysis.fen) === "white",
          )
        : [];
      const shown = moves
        .slice(0, this.variation.step + 1)
        .map((move) => `${move.label} ${move.san}`.trim());
      return [
        h(
          "div",
          { class: "panel-head" },
          h("span", { class: "panel-move" }, `Line ${this.variation.rank}`),
        ),
        h("p", { class: "panel-line" }, shown.join(" ")),
        h(
          "p",
          { class: "panel-note" },
          h(
            "button",
            { type: "button", class: "link", onclick: () => this.back() },
            "Back to the position",
          ),
          " (Esc)",
        ),
      ];
    }
    if (!best) return [h("p", { class: "panel-note" }, this.waiting(progress))];
    const first = numbered(
      best.pvSan.slice(0, 1),
      moveNumberOf(progress.analysis.fen),
      turn(progress.analysis.fen) === "white",
    )[0];
    return [
      h(
        "div",
        { class: "panel-head" },
        h("span", { class: "panel-move" }, `Best: ${first ? `${first.label} ${first.san}` : "—"}`),
        h("span", { class: "panel-eval" }, score(best)),
      ),
      h(
        "p",
        { class: "panel-note" },
        "Click a move of a line to see the position it reaches; ← → step through the best line.",
      ),
    ];
  }
}

function wdlBar(wdl: { win: number; draw: number; loss: number }): Node {
  const part = (name: string, value: number) => {
    const piece = h("span", { class: `wdl-${name}` });
    piece.style.width = `${value / 10}%`;
    return piece;
  };
  return h(
    "span",
    {
      class: "wdl",
      title: `White wins ${wdl.win / 10}%, draw ${wdl.draw / 10}%, Black wins ${wdl.loss / 10}%`,
    },
    h(
      "span",
      { class: "wdl-bar", "aria-hidden": "true" },
      part("win", wdl.win),
      part("draw", wdl.draw),
      part("loss", wdl.loss),
    ),
    h(
      "span",
      { class: "wdl-text" },
      `W ${(wdl.win / 10).toFixed(0)}% · D ${(wdl.draw / 10).toFixed(0)}% · L ${(wdl.loss / 10).toFixed(0)}%`,
    ),
  );
}

function moveNumberOf(fen: string): number {
  return Number(fen.split(" ")[5] ?? "1") || 1;
}
