// The evaluation graph: White's winning chances (Win%) after each ply, drawn in SVG.
// The light area is White's share; a dot marks each inaccuracy, mistake and blunder;
// a click anywhere selects the nearest ply.

import type { Ply } from "./api";
import { s } from "./dom";
import { GLYPHS, INITIAL_WIN_PERCENT, JUDGMENT_NAMES, moveNumber, score } from "./format";

const HEIGHT = 140;
const PAD = 6;

/** Win% after each ply, index 0 the start; null where the position is not analysed yet.
 * The mating move has no evaluation (as on Lichess): it counts as 100 or 0. */
export function winPercents(plies: Ply[]): (number | null)[] {
  return [
    INITIAL_WIN_PERCENT,
    ...plies.map((ply) => {
      if (ply.eval) return ply.eval.winPercent;
      if (ply.san.endsWith("#")) return ply.color === "WHITE" ? 100 : 0;
      return null;
    }),
  ];
}

export function drawGraph(
  container: HTMLElement,
  plies: Ply[],
  selected: number,
  select: (ply: number) => void,
): void {
  const width = Math.max(240, container.clientWidth);
  const values = winPercents(plies);
  const steps = Math.max(1, values.length - 1);
  const x = (ply: number) => PAD + (ply * (width - 2 * PAD)) / steps;
  const y = (win: number) => PAD + ((100 - win) * (HEIGHT - 2 * PAD)) / 100;
  const bottom = HEIGHT - PAD;

  const svg = s("svg", {
    class: "graph",
    width,
    height: HEIGHT,
    viewBox: `0 0 ${width} ${HEIGHT}`,
    role: "img",
    "aria-label": "Evaluation graph: White's winning chances after each move",
  });
  svg.append(s("rect", { class: "graph-back", x: 0, y: 0, width, height: HEIGHT, rx: 4 }));

  // Every tenth move, a faint line and its number.
  for (let move = 10; move * 2 <= steps; move += 10) {
    const at = x(move * 2);
    svg.append(
      s("line", { class: "graph-tick", x1: at, x2: at, y1: PAD, y2: bottom }),
      s("text", { class: "graph-label", x: at + 3, y: PAD + 11 }, String(move)),
    );
  }

  // The area and line, one piece per run of analysed plies (gaps while it runs).
  for (const run of runs(values)) {
    const points = run.map((ply) => `${x(ply)},${y(values[ply] as number)}`);
    const first = run[0] as number;
    const last = run[run.length - 1] as number;
    svg.append(
      s("path", {
        class: "graph-area",
        d: `M${x(first)},${bottom} L${points.join(" L")} L${x(last)},${bottom} Z`,
      }),
      s("polyline", { class: "graph-line", points: points.join(" ") }),
    );
  }
  svg.append(s("line", { class: "graph-middle", x1: PAD, x2: width - PAD, y1: y(50), y2: y(50) }));

  // Where the shown position is (under the judged moves' dots).
  svg.append(
    s("line", { class: "graph-cursor", x1: x(selected), x2: x(selected), y1: 0, y2: HEIGHT }),
  );
  const current = values[selected];
  if (current !== null && current !== undefined) {
    svg.append(s("circle", { class: "graph-here", cx: x(selected), cy: y(current), r: 3.5 }));
  }

  // The judged moves.
  plies.forEach((ply, index) => {
    const win = values[index + 1];
    if (!ply.judgment || win === null || win === undefined) return;
    const name = ply.judgment.name;
    svg.append(
      s(
        "circle",
        {
          class: `graph-dot ${name.toLowerCase()}`,
          cx: x(index + 1),
          cy: y(win),
          r: name === "BLUNDER" ? 5 : 4,
        },
        s("title", {}, `${moveNumber(ply)} ${ply.san}${GLYPHS[name]} ${JUDGMENT_NAMES[name]}`),
      ),
    );
  });

  // One invisible column per ply takes the clicks, with the move as its tooltip.
  values.forEach((win, index) => {
    const ply = plies[index - 1];
    const title = ply
      ? `${moveNumber(ply)} ${ply.san} ${ply.eval ? score(ply.eval) : win === null ? "…" : ""}`
      : "Start position";
    const column = s(
      "rect",
      {
        class: "graph-hit",
        x: x(index) - (width - 2 * PAD) / steps / 2,
        y: 0,
        width: (width - 2 * PAD) / steps,
        height: HEIGHT,
        "data-ply": index,
      },
      s("title", {}, title),
    );
    column.addEventListener("click", () => select(index));
    svg.append(column);
  });

  container.replaceChildren(svg);
}

/** Runs of consecutive indexes whose value is known. */
function runs(values: (number | null)[]): number[][] {
  const found: number[][] = [];
  let current: number[] = [];
  values.forEach((value, index) => {
    if (value === null) {
      if (current.length) found.push(current);
      current = [];
    } else current.push(index);
  });
  if (current.length) found.push(current);
  return found;
}
