// The review page (api/review_page, served at /) in headless Chromium, with the network
// closed to everything but the API, used as a person would: type the key, paste a
// PGN, watch the review fill in, click moves and the graph, use the arrow keys, paste
// a FEN. Screenshots go to SCREENSHOTS (a directory).
//
//   API_URL=http://127.0.0.1:8000/graphql API_KEY=cak_… SCREENSHOTS=dir node review_page.mjs
//
// API_URL's server must refuse requests without a key (the page is checked to say
// so), and have a worker. With LIMITED_URL, a server without keys whose anonymous
// quota is too small for the example game: its refusal must say when to retry.
//
// Prints one line per check ("ok <name>" or "FAIL <name>: <why>"), then "N passed,
// N failed", and exits 1 if any check failed. Every wait is bounded.

import { mkdirSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

const API_URL = process.env.API_URL;
const API_KEY = process.env.API_KEY;
if (!API_URL || !API_KEY) throw new Error("set API_URL and API_KEY");
const PAGE_URL = new URL("/", API_URL).href;
const LIMITED_URL = process.env.LIMITED_URL;
const SCREENSHOTS = process.env.SCREENSHOTS ?? "screenshots";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
// Deep enough that the review is still running when the half-way screenshot is taken.
const DEPTH = process.env.DEPTH ?? "16";
const WAIT_MS = 30_000;
const GAME_MS = 40_000;

// The Opera game (Morphy, Paris 1858): 33 plies, Black's mistakes, a mate at the end.
const GAME = `[Event "Paris"]
[Date "1858.??.??"]
[White "Paul Morphy"]
[Black "Duke Karl / Count Isouard"]
[Result "1-0"]

1. e4 e5 2. Nf3 d6 3. d4 Bg4 4. dxe5 Bxf3 5. Qxf3 dxe5 6. Bc4 Nf6 7. Qb3 Qe7
8. Nc3 c6 9. Bg5 b5 10. Nxb5 cxb5 11. Bxb5+ Nbd7 12. O-O-O Rd8 13. Rxd7 Rxd7
14. Rd1 Qe6 15. Bxd7+ Nxd7 16. Qb8+ Nxb8 17. Rd8# 1-0`;
const PLIES = 33;
// The board (first field of the FEN) after some of its plies, from python-chess.
const AFTER = {
  10: "rn1qkbnr/ppp2ppp/8/4p3/4P3/5Q2/PPP2PPP/RNB1KB1R",
  19: "rn2kb1r/p3qppp/2p2n2/1N2p1B1/2B1P3/1Q6/PPP2PPP/R3K2R",
  20: "rn2kb1r/p3qppp/5n2/1p2p1B1/2B1P3/1Q6/PPP2PPP/R3K2R",
  33: "1n1Rkb1r/p4ppp/4q3/4p1B1/4P3/8/PPP2PPP/2K5",
};
const ILLEGAL = "1. e4 e5 2. Ke3 Nc6";
const POSITION = "r1bqk2r/pppp1ppp/2n2n2/2b1p3/2B1P3/3P1N2/PPP2PPP/RNBQK2R w KQkq - 1 5";

mkdirSync(SCREENSHOTS, { recursive: true });
const shot = (name) => join(SCREENSHOTS, name);
for (const old of readdirSync(SCREENSHOTS).filter((name) => /^(review-|failed-)/.test(name))) {
  rmSync(shot(old));
}

const results = [];
async function check(name, body) {
  const started = Date.now();
  try {
    await body();
    results.push(true);
    console.log(`ok ${name} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  } catch (error) {
    results.push(false);
    console.log(`FAIL ${name}: ${error?.stack ?? error}`);
    await page.screenshot({ path: shot(`failed-${results.length}.png`) }).catch(() => {});
  }
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

const profile = mkdtempSync(join(tmpdir(), "review-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
const page = browser.pages()[0] ?? (await browser.newPage());

// As on a network without internet: only the API's origins answer.
const allowed = [new URL(API_URL).origin, LIMITED_URL && new URL(LIMITED_URL).origin].filter(Boolean);
const foreign = [];
const problems = [];
await browser.route("**/*", (route) => {
  const url = route.request().url();
  if (allowed.some((origin) => url.startsWith(origin)) || url.startsWith("data:")) return route.continue();
  foreign.push(url);
  return route.abort();
});
page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
page.on("console", (message) => {
  // A Content-Security-Policy refusal or a failed load shows here.
  if (message.type() === "error") problems.push(`console: ${message.text()}`);
});

// Every WebSocket the page opens goes through here, so that the test can cut one.
const sockets = [];
await page.routeWebSocket(/\/graphql$/, (socket) => {
  socket.connectToServer();
  sockets.push(socket);
});

const board = page.locator("#board");
const boardPlacement = async () => ((await board.getAttribute("data-fen")) ?? "").split(" ")[0];
const progress = page.locator(".game-head .progress");
const formError = page.locator("#form-error");

/** Unfold the form if it is folded. */
async function openForm() {
  if ((await page.locator("#new").getAttribute("open")) === null) await page.locator("#new > summary").click();
}

/** Paste `text` into the form, submit. */
async function paste(text) {
  await openForm();
  await page.locator("#input").fill(text);
  await page.locator("#submit").click();
}

/** Let the pieces and the bar finish moving, with no hover, before a screenshot. */
async function settle() {
  await page.mouse.move(0, 0);
  await page.waitForTimeout(400);
}

async function waitForPlacement(placement, what) {
  await page.waitForFunction(
    (expected) => document.querySelector("#board")?.dataset.fen?.split(" ")[0] === expected,
    placement,
    { timeout: WAIT_MS },
  ).catch(async () => {
    throw new Error(`${what}: the board shows ${await boardPlacement()}, expected ${placement}`);
  });
}

/** The finished review on a phone, reloaded from its address. */
async function phone() {
  // A reload picks the review up from the address (#game=…).
  await page.reload({ waitUntil: "load" });
  await page.locator('.game-head .progress[data-status="DONE"]').waitFor({ timeout: WAIT_MS });
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert(width <= 390, `the page is ${width} px wide`);
  const boardBox = await board.boundingBox();
  assert(boardBox && boardBox.width >= 300 && boardBox.width <= 390, `board ${JSON.stringify(boardBox)}`);
  await page.locator(".moves .move.inaccuracy, .moves .move.mistake, .moves .move.blunder").first().click();
  await page.evaluate(() => window.scrollTo(0, 0));
  await settle();
  await page.screenshot({ path: shot("review-phone.png") });
  await page.screenshot({ path: shot("review-phone-full.png"), fullPage: true });
}

let failure = null;
try {
  await check("the page loads from the API alone, with no error", async () => {
    await page.goto(PAGE_URL, { waitUntil: "load", timeout: WAIT_MS });
    await page.locator("#board cg-board piece").first().waitFor({ timeout: WAIT_MS });
    const pieces = await page.locator("#board cg-board piece").count();
    assert(pieces === 32, `${pieces} pieces on the start position`);
    assert(foreign.length === 0, `asked other hosts: ${foreign.join(", ")}`);
    assert(problems.length === 0, problems.join("; "));
  });

  await check("without a key, the page says the server needs one", async () => {
    await paste(GAME);
    await formError.filter({ hasText: "needs an API key" }).waitFor({ timeout: WAIT_MS });
    assert((await formError.getAttribute("data-code")) === "UNAUTHENTICATED", "code");
    problems.length = 0; // the browser logs the 401 itself
  });

  await check("the key typed in is kept in the browser", async () => {
    await page.locator("#key").fill(API_KEY);
    await page.locator("#key").press("Enter"); // a change event
    await page.reload({ waitUntil: "load" });
    const kept = await page.locator("#key").inputValue();
    assert(kept === API_KEY, "the key field is empty after a reload");
  });

  await check("an illegal move in a PGN shows the server's message, naming the move", async () => {
    await paste(ILLEGAL);
    await formError.filter({ hasText: "illegal move" }).waitFor({ timeout: WAIT_MS });
    const text = await formError.innerText();
    assert(text.includes("ply 3") && text.includes("Ke3"), `the message: ${text}`);
    assert((await formError.getAttribute("data-code")) === "BAD_USER_INPUT", "code");
    problems.length = 0;
    await page.screenshot({ path: shot("review-error.png") });
  });

  let halfway = null;
  await check("a game's review fills in live (half-way screenshot)", async () => {
    await openForm();
    await page.locator("#input").fill(GAME);
    await page.selectOption("#depth", DEPTH);
    await paste(GAME);
    await progress.waitFor({ timeout: WAIT_MS });
    const moves = await page.locator(".moves .move[data-ply]").count();
    assert(moves === PLIES, `${moves} moves listed at once`);
    // Some positions analysed, not all.
    halfway = await page.waitForFunction(
      () => {
        const element = document.querySelector(".game-head .progress");
        const done = Number(element?.dataset.done);
        const total = Number(element?.dataset.total);
        return done >= total * 0.4 && done <= total * 0.75 ? { done, total } : null;
      },
      null,
      { timeout: GAME_MS, polling: 100 },
    ).then((handle) => handle.jsonValue());
    await page.screenshot({ path: shot("review-halfway.png") });
    const evaluated = await page.locator(".moves .move[data-ply] .eval").evaluateAll(
      (cells) => cells.filter((cell) => cell.textContent && cell.textContent !== "…").length,
    );
    assert(evaluated > 0 && evaluated < PLIES, `${evaluated} of ${PLIES} moves evaluated half-way`);
  });

  await check("a lost WebSocket reconnects and the review goes on where it was", async () => {
    const status = await progress.getAttribute("data-status");
    assert(status !== "DONE", "the review was over before the connection could be cut");
    const before = sockets.length;
    await sockets.at(-1).close({ code: 1012, reason: "cut by the test" });
    await page.locator("#connection.lost").waitFor({ timeout: WAIT_MS });
    await page.waitForFunction(() => document.body.dataset.socket === "connected", null, { timeout: WAIT_MS });
    assert(sockets.length > before, "no new WebSocket was opened");
    const done = Number(await progress.getAttribute("data-done"));
    assert(done >= halfway.done, `progress went back from ${halfway.done} to ${done}`);
  });

  await check("the finished review: numbers, judgments, opening (screenshot)", async () => {
    await page.locator('.game-head .progress[data-status="DONE"]').waitFor({ timeout: GAME_MS });
    const accuracy = await page.locator(".summary td.accuracy").allInnerTexts();
    assert(accuracy.length === 2 && accuracy.every((text) => /^\d+%$/.test(text)), `accuracy ${accuracy}`);
    const judged = await page.locator(".moves .move.mistake, .moves .move.blunder, .moves .move.inaccuracy").count();
    assert(judged > 0, "no move judged");
    const opening = await page.locator(".opening").innerText();
    assert(/C41/.test(opening) && /Philidor/.test(opening), `opening ${opening}`);
    const pending = await page.locator(".moves .move.pending").count();
    assert(pending === 0, `${pending} moves still pending`);
    // The first mistake or blunder, as a person would look at it.
    await page.locator(".moves .move.blunder, .moves .move.mistake").first().click();
    const comment = await page.locator("#panel .panel-comment").innerText();
    assert(/was best/.test(comment), `the panel says ${comment}`);
    await settle();
    await page.screenshot({ path: shot("review-done.png") });
  });

  await check("clicking a ply, a point of the graph, the arrow keys change the board", async () => {
    await page.locator('.moves .move[data-ply="10"]').click();
    await waitForPlacement(AFTER[10], "after clicking 5. Qxf3");
    await page.locator('.graph-hit[data-ply="20"]').click();
    await waitForPlacement(AFTER[20], "after clicking the graph at 10... cxb5");
    await page.keyboard.press("ArrowLeft");
    await waitForPlacement(AFTER[19], "after ←");
    await page.keyboard.press("ArrowRight");
    await waitForPlacement(AFTER[20], "after →");
    await page.keyboard.press("End");
    await waitForPlacement(AFTER[33], "after End (the mate)");
  });

  await check("a best line's move shows its position (desktop screenshot)", async () => {
    await page.setViewportSize({ width: 1440, height: 900 });
    await page.locator(".moves .move.blunder").last().click();
    const blunder = await boardPlacement();
    // The third move of the line the engine wanted instead.
    await page.locator("#panel .line-move").nth(2).click();
    await page.waitForFunction((old) => document.querySelector("#board")?.dataset.fen?.split(" ")[0] !== old, blunder, { timeout: WAIT_MS });
    assert(await page.locator("#panel").getByText("Engine's line").isVisible(), "no line in the panel");
    await settle();
    await page.screenshot({ path: shot("review-desktop.png") });
    await page.keyboard.press("Escape");
    await waitForPlacement(blunder, "after Esc");
  });

  await check("phone width: one column, nothing wider than the screen (screenshot)", async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    try {
      await phone();
    } finally {
      await page.setViewportSize({ width: 1280, height: 800 });
    }
  });


  await check("a position's lines deepen live, with Win% and WDL (screenshot)", async () => {
    await paste(POSITION);
    const depths = new Set();
    const deadline = Date.now() + WAIT_MS;
    const panel = page.locator(".content .progress[data-depth]");
    await panel.waitFor({ timeout: WAIT_MS });
    for (;;) {
      const status = await panel.getAttribute("data-status");
      depths.add(Number(await panel.getAttribute("data-depth")));
      if (status === "DONE" || Date.now() > deadline) break;
      await page.waitForTimeout(100);
    }
    assert((await panel.getAttribute("data-status")) === "DONE", "not DONE in time");
    assert(depths.size >= 3, `depths seen: ${[...depths]}`);
    const lines = await page.locator(".lines .line-row").count();
    assert(lines === 3, `${lines} lines`);
    const win = await page.locator(".lines .win").first().innerText();
    const wdl = await page.locator(".lines .wdl-text").first().innerText();
    assert(/Win \d+%/.test(win) && /W \d+% · D \d+% · L \d+%/.test(wdl), `${win} ${wdl}`);
    await settle();
    await page.screenshot({ path: shot("review-position.png") });
  });

  if (LIMITED_URL) {
    await check("QUOTA_EXCEEDED says when to try again", async () => {
      await page.goto(new URL("/", LIMITED_URL).href, { waitUntil: "load" });
      // Deeper than before: none of the game's positions is in the cache, all need a search.
      await page.locator("#input").fill(GAME);
      await page.selectOption("#depth", "20");
      await page.locator("#submit").click();
      await formError.filter({ hasText: "Try again in" }).waitFor({ timeout: WAIT_MS });
      assert((await formError.getAttribute("data-code")) === "QUOTA_EXCEEDED", "code");
      const button = await page.locator("#submit").innerText();
      assert(/Retry in \d+/.test(button) && (await page.locator("#submit").isDisabled()), `button ${button}`);
      await page.screenshot({ path: shot("review-quota.png") });
    });
  }

  await check("no other host asked, no page error", async () => {
    assert(foreign.length === 0, `asked other hosts: ${foreign.join(", ")}`);
    assert(problems.length === 0, problems.join("; "));
  });
} catch (error) {
  failure = error;
  console.log(`FAIL review page: ${error?.stack ?? error}`);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
const failed = results.filter((passed) => !passed).length + (failure ? 1 : 0);
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
