// A game's review: the header (players, opening, progress), each side's numbers, the
// evaluation graph, the moves with their judgments, and the board and the panel under
// it for the position chosen. It draws whatever version of the game it is given, so it
// fills in as the subscription brings positions.

import type { Game, JudgmentName, Ply, Side } from "./api";
import { Board, line, play } from "./board";
import { fill, h } from "./dom";
import { GLYPHS, JUDGMENT_NAMES, moveNumber, numbered, score, turn } from "./format";
import { drawGraph, winPercents } from "./graph";

/** The badges' colours on the board (Lichess's). */
const GLYPH_COLORS: Record<JudgmentName, string> = {
  INACCURACY: "#56b4e9",
  MISTAKE: "#e69f00",
  BLUNDER: "#df3f3f",
};

/** A position of a best line being looked at: `step` moves into the line of ply `ply`. */
interface Variation {
  ply: number;
  step: number;
}

export class GameView {
  private game: Game | null = null;
  /** The position shown: 0 the start, n after the n-th ply. */
  private selected = 0;
  private variation: Variation | null = null;
  private finalFen: { ply: Ply; fen: string } | null = null;
  private graph: HTMLElement | null = null;
  private moves: HTMLElement | null = null;
  private readonly resize = new ResizeObserver(() => this.drawGraph());

  constructor(
    private readonly board: Board,
    private readonly content: HTMLElement,
    private readonly panel: HTMLElement,
  ) {}

  get id(): string | null {
    return this.game?.id ?? null;
  }

  /** Draw a newer version of the game (the same one, or another from its start). */
  update(game: Game): void {
    if (game.id !== this.game?.id) {
      this.selected = 0;
      this.variation = null;
    }
    this.game = game;
    this.selected = Math.min(this.selected, game.plies.length);
    this.renderContent();
    this.showPosition();
  }

  clear(): void {
    this.game = null;
    this.resize.disconnect();
  }

  /** Show the position after `ply` plies (0: the start). */
  select(ply: number): void {
    if (!this.game) return;
    this.variation = null;
    this.selected = Math.max(0, Math.min(ply, this.game.plies.length));
    this.showPosition();
    this.markSelected();
  }

  /** A step back or forth (arrow keys): through the line shown, else through the game. */
  step(delta: number): void {
    if (this.variation) {
      const steps = this.variationSans(this.variation.ply).length;
      const next = this.variation.step + delta;
      if (next < 0) this.select(this.variation.ply - 1);
      else if (next < steps) this.showVariation({ ply: this.variation.ply, step: next });
      return;
    }
    this.select(this.selected + delta);
  }

  first(): void {
    this.select(0);
  }

  last(): void {
    this.select(this.game?.plies.length ?? 0);
  }

  /** Leave a best line for the game's move it hangs on. */
  back(): void {
    if (this.variation) this.select(this.variation.ply);
  }

  // --- The side column.

  private renderContent(): void {
    const game = this.game;
    if (!game) return;
    const scroll = this.moves?.scrollTop ?? 0;
    this.graph = h("div", { class: "graph-box" });
    this.moves = h(
      "div",
      { class: "moves", role: "list", "aria-label": "Moves" },
      this.moveList(game),
    );
    fill(
      this.content,
      h("div", { class: "card game-head" }, this.header(game)),
      h("div", { class: "card summary" }, this.summary(game)),
      h("div", { class: "card graph-card" }, this.graph),
      h("div", { class: "card moves-card" }, this.moves),
    );
    this.moves.scrollTop = scroll;
    this.resize.disconnect();
    this.resize.observe(this.graph);
    this.drawGraph();
    this.markSelected();
  }

  private header(game: Game): (Node | null)[] {
    const tag = (name: string) => {
      const value = game.headers.find((header) => header.name === name)?.value ?? "";
      return /^[?.\s-]*$/.test(value) || value === "*" ? "" : value;
    };
    const player = (color: "White" | "Black") =>
      h(
        "span",
        { class: `player ${color.toLowerCase()}` },
        h("span", { class: "piece-dot", "aria-hidden": "true" }),
        tag(color) || color,
        tag(`${color}Elo`) && h("small", {}, ` ${tag(`${color}Elo`)}`),
      );
    const event = [tag("Event"), tag("Site"), tag("Date").replace(/\.\?\?/g, "")].filter(Boolean);
    const { done, total } = game.progress;
    return [
      h(
        "div",
        { class: "players" },
        player("White"),
        h("span", { class: "result" }, tag("Result") || "–"),
        player("Black"),
      ),
      event.length ? h("div", { class: "event" }, event.join(" · ")) : null,
      game.opening
        ? h(
            "div",
            { class: "opening" },
            h("span", { class: "eco" }, game.opening.eco),
            ` ${game.opening.name}`,
          )
        : null,
      h(
        "div",
        {
          class: `progress ${game.status.toLowerCase()}`,
          "data-status": game.status,
          "data-done": done,
          "data-total": total,
        },
        h("div", { class: "progress-bar" }, progressFill(total ? done / total : 1)),
        h("span", { class: "progress-text" }, statusText(game)),
      ),
      game.error ? h("p", { class: "error" }, game.error) : null,
    ];
  }

  private summary(game: Game): Node {
    const judged = (color: "WHITE" | "BLACK", name: string) =>
      game.plies.filter((ply) => ply.color === color && ply.judgment?.name === name).length;
    const row = (color: "WHITE" | "BLACK", side: Side | null) => {
      const label = color === "WHITE" ? "White" : "Black";
      const name = game.headers.find((header) => header.name === label)?.value;
      return h(
        "tr",
        { "data-side": label.toLowerCase() },
        h(
          "th",
          { scope: "row" },
          h("span", { class: `piece-dot ${label.toLowerCase()}`, "aria-hidden": "true" }),
          name && name !== "?" ? name : label,
        ),
        h("td", { class: "accuracy" }, side ? `${side.accuracy.toFixed(0)}%` : "…"),
        h("td", {}, side ? side.acpl : "…"),
        h("td", { class: "inaccuracy" }, side?.inaccuracies ?? judged(color, "INACCURACY")),
        h("td", { class: "mistake" }, side?.mistakes ?? judged(color, "MISTAKE")),
        h("td", { class: "blunder" }, side?.blunders ?? judged(color, "BLUNDER")),
      );
    };
    return h(
      "table",
      {},
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          h("th", {}, h("span", { class: "visually-hidden" }, "Side")),
          h("th", { title: "Lichess's game accuracy" }, "Accuracy"),
          h("th", { title: "Average centipawn loss" }, "ACPL"),
          h("th", { class: "inaccuracy", title: "Inaccuracies" }, "?!"),
          h("th", { class: "mistake", title: "Mistakes" }, "?"),
          h("th", { class: "blunder", title: "Blunders" }, "??"),
        ),
      ),
      h("tbody", {}, row("WHITE", game.white), row("BLACK", game.black)),
    );
  }

  private drawGraph(): void {
    if (!this.game || !this.graph) return;
    drawGraph(this.graph, this.game.plies, this.selected, (ply) => this.select(ply));
  }

  /** The moves, two a row; a judged move breaks the row for its comment and best line,
   * as on Lichess. */
  private moveList(game: Game): Node[] {
    const cells: Node[] = [];
    if (!game.plies.length) return [h("p", { class: "empty" }, "This game has no moves.")];
    game.plies.forEach((ply, index) => {
      const white = ply.color === "WHITE";
      if (white || index === 0) cells.push(h("span", { class: "index" }, ply.moveNumber));
      if (!white && index === 0) cells.push(h("span", { class: "move filler" }, "…"));
      cells.push(this.moveButton(ply));
      if (ply.judgment) {
        if (white) cells.push(h("span", { class: "move filler" }, "…"));
        cells.push(this.comment(ply));
        if (white && index + 1 < game.plies.length) {
          cells.push(
            h("span", { class: "index" }, ply.moveNumber),
            h("span", { class: "move filler" }, "…"),
          );
        }
      }
    });
    return cells;
  }

  private moveButton(ply: Ply): Node {
    const judgment = ply.judgment?.name;
    const pending = ply.eval === null && !ply.san.endsWith("#");
    return h(
      "button",
      {
        type: "button",
        class: ["move", judgment?.toLowerCase(), pending && "pending"].filter(Boolean).join(" "),
        "data-ply": ply.ply,
        role: "listitem",
        title:
          ply.judgment?.comment ??
          (ply.bestMoveSan ? `${ply.bestMoveSan} was the engine's choice` : null),
        onclick: () => this.select(ply.ply),
      },
      h("span", { class: "san" }, ply.san),
      judgment ? h("span", { class: "glyph" }, GLYPHS[judgment]) : null,
      h("span", { class: "eval" }, ply.eval ? score(ply.eval) : pending ? "…" : ""),
    );
  }

  /** Lichess's comment under a judged move, and the best line, each move clickable. */
  private comment(ply: Ply): Node {
    const name = ply.judgment?.name ?? "INACCURACY";
    return h(
      "div",
      { class: `comment ${name.toLowerCase()}` },
      h("span", { class: "comment-text" }, ply.judgment?.comment ?? ""),
      this.bestLine(ply),
    );
  }

  private bestLine(ply: Ply): Node | null {
    const sans = ply.bestLineSan ?? [];
    if (!sans.length) return null;
    const moves = numbered(sans, ply.moveNumber, ply.color === "WHITE");
    return h(
      "span",
      { class: "line" },
      moves.map((move, step) =>
        h(
          "button",
          {
            type: "button",
            class: "line-move",
            "data-ply": ply.ply,
            "data-step": step,
            onclick: (event: Event) => {
              event.stopPropagation();
              this.showVariation({ ply: ply.ply, step });
            },
          },
          move.label && h("span", { class: "line-number" }, move.label),
          move.san,
        ),
      ),
    );
  }

  private markSelected(): void {
    if (!this.moves) return;
    for (const active of this.moves.querySelectorAll(".active")) active.classList.remove("active");
    const current = this.variation
      ? this.moves.querySelector(
          `.line-move[data-ply="${this.variation.ply}"][data-step="${this.variation.step}"]`,
        )
      : this.moves.querySelector(`.move[data-ply="${this.selected}"]`);
    current?.classList.add("active");
    if (current instanceof HTMLElement) keepInView(this.moves, current);
    this.drawGraph();
  }

  // --- The board and the panel under it.

  /** The FEN after `ply` plies. */
  private fenAfter(ply: number): string {
    const game = this.game as Game;
    if (ply === 0) return game.initialFen;
    const next = game.plies[ply];
    if (next) return next.fenBefore;
    const last = game.plies[ply - 1] as Ply;
    if (this.finalFen?.ply !== last)
      this.finalFen = { ply: last, fen: play(last.fenBefore, last.uci) };
    return this.finalFen.fen;
  }

  private showPosition(): void {
    const game = this.game;
    if (!game) return;
    const ply = game.plies[this.selected - 1];
    const wins = winPercents(game.plies);
    this.board.show({
      fen: this.fenAfter(this.selected),
      lastMove: ply?.uci,
      // The move the engine wanted instead of the one played.
      arrows: ply?.bestMove ? [{ uci: ply.bestMove, brush: "green" }] : [],
      glyph: ply?.judgment
        ? { uci: ply.uci, text: GLYPHS[ply.judgment.name], color: GLYPH_COLORS[ply.judgment.name] }
        : null,
      winPercent: wins[this.selected] ?? null,
      score: ply ? evalLabel(ply) : "+0.15",
    });
    fill(this.panel, ply ? this.plyPanel(ply) : this.startPanel(game));
  }

  private showVariation(variation: Variation): void {
    const game = this.game;
    const ply = game?.plies[variation.ply - 1];
    if (!game || !ply) return;
    const steps = line(ply.fenBefore, this.variationSans(variation.ply));
    const here = steps[variation.step];
    if (!here) return;
    this.variation = variation;
    this.selected = variation.ply;
    const before = game.plies[variation.ply - 2];
    this.board.show({
      fen: here.fen,
      lastMove: here.uci,
      winPercent: winPercents(game.plies)[variation.ply - 1] ?? null,
      score: before ? evalLabel(before) : "+0.15",
    });
    const moves = numbered(
      this.variationSans(variation.ply),
      ply.moveNumber,
      ply.color === "WHITE",
    );
    fill(
      this.panel,
      h(
        "div",
        { class: "panel-head" },
        h("span", { class: "panel-move" }, "Engine's line"),
        h("span", { class: "panel-note" }, `instead of ${moveNumber(ply)} ${ply.san}`),
      ),
      h(
        "p",
        { class: "panel-line" },
        moves.map((move, step) =>
          h(
            "button",
            {
              type: "button",
              class: `line-move${step === variation.step ? " active" : ""}`,
              onclick: () => this.showVariation({ ply: variation.ply, step }),
            },
            move.label && h("span", { class: "line-number" }, move.label),
            move.san,
          ),
        ),
      ),
      h(
        "p",
        { class: "panel-note" },
        h(
          "button",
          { type: "button", class: "link", onclick: () => this.back() },
          "Back to the game",
        ),
        " (Esc)",
      ),
    );
    this.markSelected();
  }

  private variationSans(ply: number): string[] {
    return this.game?.plies[ply - 1]?.bestLineSan ?? [];
  }

  private startPanel(game: Game): (Node | null)[] {
    return [
      h(
        "div",
        { class: "panel-head" },
        h("span", { class: "panel-move" }, "Start position"),
        h(
          "span",
          { class: "panel-note" },
          `${turn(game.initialFen) === "white" ? "White" : "Black"} to move`,
        ),
      ),
      h(
        "p",
        { class: "panel-note" },
        game.plies.length
          ? "Step through the moves with ← and →, or click a move or a point of the graph."
          : "No moves to review.",
      ),
    ];
  }

  private plyPanel(ply: Ply): (Node | null)[] {
    const judgment = ply.judgment?.name;
    const pending = ply.eval === null && !ply.san.endsWith("#");
    let verdict: Node | string;
    if (judgment) {
      verdict = h("span", { class: `verdict ${judgment.toLowerCase()}` }, JUDGMENT_NAMES[judgment]);
    } else if (pending) {
      verdict = h("span", { class: "verdict pending" }, "analysing…");
    } else if (ply.san.endsWith("#")) {
      verdict = h("span", { class: "verdict best" }, "Checkmate");
    } else if (ply.bestMoveSan) {
      verdict = h("span", { class: "verdict good" }, "Good move");
    } else {
      verdict = h("span", { class: "verdict best" }, "Best move");
    }
    const numbers = [
      ply.accuracy !== null ? `accuracy ${ply.accuracy.toFixed(0)}%` : "",
      // A best move's loss is only the engine changing its mind a little: not shown.
      ply.centipawnLoss && ply.bestMoveSan ? `${ply.centipawnLoss} centipawns lost` : "",
    ].filter(Boolean);
    return [
      h(
        "div",
        { class: "panel-head" },
        h(
          "span",
          { class: `panel-move ${judgment?.toLowerCase() ?? ""}` },
          `${moveNumber(ply)} ${ply.san}`,
          judgment ? GLYPHS[judgment] : "",
        ),
        verdict,
        h("span", { class: "panel-eval" }, evalLabel(ply)),
      ),
      ply.judgment
        ? h("p", { class: "panel-comment" }, ply.judgment.comment)
        : !pending && ply.bestMoveSan
          ? h("p", { class: "panel-comment" }, `The engine preferred ${ply.bestMoveSan}.`)
          : null,
      ply.bestLineSan?.length
        ? h(
            "p",
            { class: "panel-line" },
            h("span", { class: "panel-label" }, "Best line "),
            this.bestLine(ply),
          )
        : null,
      numbers.length ? h("p", { class: "panel-note" }, numbers.join(" · ")) : null,
    ];
  }
}

function evalLabel(ply: Ply): string {
  if (ply.eval) return score(ply.eval);
  if (ply.san.endsWith("#")) return ply.color === "WHITE" ? "1-0" : "0-1";
  return "…";
}

function statusText(game: Game): string {
  const { done, total } = game.progress;
  const depth = game.depthLimit ? ` at depth ${game.depthLimit}` : "";
  switch (game.status) {
    case "QUEUED":
      return `Waiting for a worker · ${total} positions${depth}`;
    case "RUNNING":
      return `Analysing · ${done} of ${total} positions${depth}`;
    case "DONE":
      return `Analysed${depth} · ${total} positions`;
    case "FAILED":
      return `Failed after ${done} of ${total} positions`;
    case "CANCELED":
      return `Canceled after ${done} of ${total} positions`;
  }
}

function progressFill(fraction: number): HTMLElement {
  const bar = h("div", { class: "progress-fill" });
  bar.style.width = `${Math.round(fraction * 100)}%`;
  return bar;
}

/** Scroll `container` (positioned, so offsets count from it), not the page, so that
 * `item` shows. */
function keepInView(container: HTMLElement, item: HTMLElement): void {
  const top = item.offsetTop;
  const bottom = top + item.offsetHeight;
  if (top < container.scrollTop) container.scrollTop = top - 8;
  else if (bottom > container.scrollTop + container.clientHeight) {
    container.scrollTop = bottom - container.clientHeight + 8;
  }
}
