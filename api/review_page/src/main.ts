// The page: paste a game or a position, submit it, follow its analysis live.
//
// Submitting goes over HTTP (a mutation); following over the WebSocket (a
// subscription that emits the current state at once, then each change). The address
// bar keeps the id (#game=… or #position=…), so a reload or a shared link picks the
// review up where it is.

import "./review.css";

import type { Subscription } from "rxjs";

import {
  FOLLOW_GAME,
  FOLLOW_POSITION,
  GAME,
  SUBMIT_GAME,
  SUBMIT_POSITION,
  connect,
  describe,
  type Connection,
  type Problem,
  type SocketState,
} from "./api";
import { Board } from "./board";
import { byId, fill, h } from "./dom";
import { inSeconds } from "./format";
import { GameView } from "./game";
import { PositionView } from "./position";

const API_URL = new URL("graphql", document.baseURI).href;
const KEY_STORAGE = "chess-review:api-key";

const EXAMPLE_GAME = `[Event "A Night at the Opera"]
[Site "Paris FRA"]
[Date "1858.??.??"]
[White "Paul Morphy"]
[Black "Duke Karl / Count Isouard"]
[Result "1-0"]

1. e4 e5 2. Nf3 d6 3. d4 Bg4 4. dxe5 Bxf3 5. Qxf3 dxe5 6. Bc4 Nf6 7. Qb3 Qe7
8. Nc3 c6 9. Bg5 b5 10. Nxb5 cxb5 11. Bxb5+ Nbd7 12. O-O-O Rd8 13. Rxd7 Rxd7
14. Rd1 Qe6 15. Bxd7+ Nxd7 16. Qb8+ Nxb8 17. Rd8# 1-0`;
const EXAMPLE_POSITION = "r1bqk2r/pppp1ppp/2n2n2/2b1p3/2B1P3/3P1N2/PPP2PPP/RNBQK2R w KQkq - 1 5";

// --- The page's parts.

const form = byId<HTMLFormElement>("form");
const input = byId<HTMLTextAreaElement>("input");
const detected = byId("detected");
const submit = byId<HTMLButtonElement>("submit");
const formError = byId("form-error");
const keyInput = byId<HTMLInputElement>("key");
const details = byId<HTMLDetailsElement>("new");
const banner = byId("connection");
const content = byId("content");
const panel = byId("panel");

const board = new Board(byId("board"), byId("eval-bar"));
board.show({ fen: "rnbqkbnr/pppppppp/8/8/8/8/PPPPPPPP/RNBQKBNR w KQkq - 0 1", winPercent: null });
const games = new GameView(board, content, panel);
const positions = new PositionView(board, content, panel);

let view: GameView | PositionView | null = null;
let following: Subscription[] = [];
let followed: { kind: "game" | "position"; id: string } | null = null;

// --- The connection, rebuilt when the key changes.

keyInput.value = localStorage.getItem(KEY_STORAGE) ?? "";
let connection: Connection = connect(API_URL, keyInput.value.trim(), showSocket);

// Enter in the key field takes the key; it does not submit the form.
keyInput.addEventListener("keydown", (event) => {
  if (event.key !== "Enter") return;
  event.preventDefault();
  keyInput.blur();
});
keyInput.addEventListener("change", () => {
  const key = keyInput.value.trim();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
  connection.dispose();
  connection = connect(API_URL, key, showSocket);
  // What was followed is followed again, with the new key.
  if (followed) follow(followed.kind, followed.id);
});

let bannerTimer: ReturnType<typeof setTimeout> | undefined;

/** Tell people when the WebSocket is lost, and when it is back. */
function showSocket(state: SocketState): void {
  clearTimeout(bannerTimer);
  document.body.dataset.socket = state.kind;
  if (state.kind === "retrying") {
    banner.hidden = false;
    banner.className = "connection lost";
    banner.textContent =
      state.attempt > 1
        ? `Connection lost: reconnecting (attempt ${state.attempt})…`
        : "Connection lost: reconnecting…";
  } else if (state.kind === "connected" && state.after > 0) {
    banner.hidden = false;
    banner.className = "connection back";
    banner.textContent = "Reconnected: the review goes on where it was.";
    bannerTimer = setTimeout(() => (banner.hidden = true), 4000);
  } else {
    banner.hidden = true;
  }
}

// --- Following a game or a position.

function stopFollowing(): void {
  for (const subscription of following) subscription.unsubscribe();
  following = [];
}

function follow(kind: "game" | "position", id: string): void {
  stopFollowing();
  followed = { kind, id };
  history.replaceState(null, "", `#${kind}=${id}`);
  const { apollo } = connection;
  fill(panel);
  fill(content, h("div", { class: "card intro waiting" }, h("p", {}, "Waiting for the server…")));
  if (kind === "game") {
    view = games;
    // The query reads the game from the cache (the mutation put it there) or asks over
    // HTTP (after a reload); it runs again by itself each time the cache's GameAnalysis
    // changes: the subscription's events are written there, under the same id.
    const watched = apollo.watchQuery({ query: GAME, variables: { id } });
    following.push(
      watched.subscribe((result) => {
        if (result.error) return showFollowProblem(describe(result.error));
        if (result.dataState !== "complete") return;
        if (result.data.gameAnalysis) games.update(result.data.gameAnalysis);
        else showFollowProblem(unknown("game"));
      }),
      apollo.subscribe({ query: FOLLOW_GAME, variables: { id } }).subscribe(({ error }) => {
        if (error) showFollowProblem(describe(error));
      }),
    );
  } else {
    view = positions;
    games.clear();
    following.push(
      apollo
        .subscribe({ query: FOLLOW_POSITION, variables: { id } })
        .subscribe(({ data, error }) => {
          if (error) return showFollowProblem(describe(error));
          if (data) positions.update(data.analysisProgress);
        }),
    );
  }
}

function unknown(what: string): Problem {
  return {
    message: `no ${what} with this id here (or not yours)`,
    code: "NOT_FOUND",
    retryAfter: null,
  };
}

/** A problem while following: said above the review, with a way to try again. */
function showFollowProblem(problem: Problem): void {
  const target = followed;
  const again = h(
    "button",
    { type: "button", class: "primary", onclick: () => target && follow(target.kind, target.id) },
    "Try again",
  );
  content.querySelector(".problem")?.remove();
  content.querySelector(".waiting")?.remove();
  content.prepend(
    h(
      "div",
      { class: "card problem", role: "alert" },
      h("p", {}, explain(problem)),
      problem.code === "NOT_FOUND" ? null : again,
    ),
  );
  if (problem.code === "UNAUTHENTICATED") askForKey();
}

// --- The form.

type Kind = "game" | "position" | null;

/** A FEN is one line of eight ranks and a side to move; anything else is a PGN. */
function kindOf(text: string): Kind {
  const trimmed = text.trim();
  if (!trimmed) return null;
  if (
    trimmed === "startpos" ||
    /^([1-8pnbrqk]{1,8}\/){7}[1-8pnbrqk]{1,8}\s+[wb](\s|$)/i.test(trimmed)
  ) {
    return "position";
  }
  return "game";
}

function showKind(): void {
  const kind = kindOf(input.value);
  for (const option of form.querySelectorAll<HTMLElement>(".option")) {
    option.hidden = option.dataset.kind !== (kind ?? "game");
  }
  if (kind === "position") {
    detected.textContent = "Position (FEN)";
    submit.textContent = "Analyse";
  } else if (kind === "game") {
    const plies = input.value
      .replace(/\[[^\]]*\]/g, " ")
      .replace(/\{[^}]*\}|;[^\n]*/g, " ")
      .match(
        /(^|\s|\.)([NBRQK]?[a-h]?[1-8]?x?[a-h][1-8](=?[NBRQ])?|O-O(-O)?|0-0(-0)?)[+#]?(?=\s|$|[!?])/g,
      );
    const moves = Math.ceil((plies?.length ?? 0) / 2);
    detected.textContent = moves
      ? `Game (PGN), ${moves} move${moves === 1 ? "" : "s"}`
      : "Game (PGN)";
    submit.textContent = "Review";
  } else {
    detected.textContent = "Paste a PGN or a FEN";
    submit.textContent = "Review";
  }
  if (!retryTimer) submit.disabled = kind === null;
}

input.addEventListener("input", showKind);
byId("example-game").addEventListener("click", () => {
  input.value = EXAMPLE_GAME;
  showKind();
});
byId("example-position").addEventListener("click", () => {
  input.value = EXAMPLE_POSITION;
  showKind();
});

form.addEventListener("submit", (event) => {
  event.preventDefault();
  void send();
});
// Ctrl+Enter in the box submits.
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) void send();
});

async function send(): Promise<void> {
  const kind = kindOf(input.value);
  if (!kind || submit.disabled) return;
  hideFormProblem();
  submit.disabled = true;
  submit.classList.add("busy");
  const { apollo } = connection;
  try {
    if (kind === "game") {
      const depthLimit = Number(byId<HTMLSelectElement>("depth").value);
      const { data } = await apollo.mutate({
        mutation: SUBMIT_GAME,
        // The depth decides; the time is a ceiling per position.
        variables: { input: { pgn: input.value, depthLimit, timeLimit: 5 } },
      });
      if (data) follow("game", data.submitGameAnalysis.id);
    } else {
      const { data } = await apollo.mutate({
        mutation: SUBMIT_POSITION,
        variables: {
          input: {
            fen: input.value.trim(),
            numMovesToReturn: Number(byId<HTMLSelectElement>("lines").value),
            timeLimit: Number(byId<HTMLSelectElement>("seconds").value),
          },
        },
      });
      if (data) follow("position", data.submitAnalysis.id);
    }
    details.open = false;
  } catch (error) {
    showFormProblem(describe(error));
  } finally {
    submit.classList.remove("busy");
    if (!retryTimer) submit.disabled = false;
  }
}

let retryTimer: ReturnType<typeof setInterval> | undefined;

/** The server's refusal, in words; with a countdown when it says when to retry. */
function showFormProblem(problem: Problem): void {
  formError.hidden = false;
  formError.dataset.code = problem.code ?? "";
  fill(formError, explain(problem));
  if (problem.code === "UNAUTHENTICATED") askForKey();
  if (problem.retryAfter === null) return;
  const until = Date.now() + problem.retryAfter * 1000;
  const label = submit.textContent;
  const countdown = h("span", { class: "retry" });
  formError.append(" ", countdown);
  const tick = () => {
    const left = (until - Date.now()) / 1000;
    if (left <= 0) {
      clearInterval(retryTimer);
      retryTimer = undefined;
      countdown.textContent = "You can try again now.";
      submit.disabled = false;
      submit.textContent = label;
      return;
    }
    countdown.textContent = `Try again in ${inSeconds(left)}.`;
    submit.disabled = true;
    submit.textContent = `Retry in ${inSeconds(left)}`;
  };
  clearInterval(retryTimer);
  retryTimer = setInterval(tick, 250);
  tick();
}

function hideFormProblem(): void {
  formError.hidden = true;
  formError.textContent = "";
}

/** What a problem means for the person looking at the page. */
function explain(problem: Problem): string {
  switch (problem.code) {
    case "BAD_USER_INPUT":
      return `The server refused it: ${problem.message}`;
    case "UNAUTHENTICATED":
      return `This server needs an API key (${problem.message}): enter yours in the API key field.`;
    case "QUOTA_EXCEEDED":
      // A game needs a queued analysis for each of its positions not in the cache.
      return `Your quota is used up for now: ${problem.message}. A game counts each of its positions.`;
    case "RATE_LIMITED":
      return `Too much at once: ${problem.message}.`;
    case "QUEUE_FULL":
    case "SERVICE_UNAVAILABLE":
      return `The server is busy: ${problem.message}.`;
    case "NOT_FOUND":
      return `Not found: ${problem.message}.`;
    default:
      return problem.code ? `${problem.message} (${problem.code})` : problem.message;
  }
}

function askForKey(): void {
  details.open = true;
  keyInput.focus();
}

// --- The board's buttons and keys.

function go(action: string): void {
  if (action === "flip") return board.flip();
  if (!view) return;
  if (action === "first") view.first();
  else if (action === "last") view.last();
  else if (action === "previous") view.step(-1);
  else if (action === "next") view.step(1);
}

for (const button of document.querySelectorAll<HTMLButtonElement>("[data-go]")) {
  button.addEventListener("click", () => go(button.dataset.go ?? ""));
}

const KEYS: Record<string, string> = {
  ArrowLeft: "previous",
  ArrowRight: "next",
  ArrowUp: "first",
  Home: "first",
  ArrowDown: "last",
  End: "last",
  f: "flip",
};

document.addEventListener("keydown", (event) => {
  const target = event.target as HTMLElement;
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (target.closest("input, textarea, select")) return;
  if (event.key === "Escape") {
    view?.back();
    return;
  }
  const action = KEYS[event.key];
  if (!action) return;
  event.preventDefault();
  go(action);
});

// --- Start: the review in the address, if any.

showKind();
const wanted = /^#(game|position)=([0-9a-f-]{36})$/i.exec(location.hash);
if (wanted) {
  details.open = false;
  follow(wanted[1] as "game" | "position", wanted[2] as string);
} else {
  fill(
    content,
    h(
      "div",
      { class: "card intro" },
      h("h2", {}, "Review a game with Stockfish"),
      h(
        "p",
        {},
        "Paste a game in PGN: every position is analysed at once by the server's workers, and the review fills in as they finish: ",
        "the evaluation graph, each move judged as Lichess judges it (?! inaccuracy, ? mistake, ?? blunder) with the best line, ",
        "accuracy and average centipawn loss for each side, the opening.",
      ),
      h(
        "p",
        {},
        "Paste a position in FEN to watch the engine's lines deepen, with win, draw and loss chances.",
      ),
    ),
  );
}
