// GraphiQL in headless Chromium, with the network closed to everything but the API:
// open /graphql, run the reference mutation in the IDE, save a screenshot showing the
// result.
//
//   API_URL=http://127.0.0.1:8000/graphql SCREENSHOT=out.png node graphiql.mjs
//
// With API_KEY, the key is typed into the IDE's headers editor first, and QUERY (an
// operation to run instead of the mutation, such as a subscription) must show the text
// EXPECT in the result pane.
//
// Exits 1 (saying why) if the IDE does not load from the API itself or shows no result.

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

const API_URL = process.env.API_URL;
const SCREENSHOT = process.env.SCREENSHOT ?? "graphiql.png";
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const WAIT_MS = 30_000;
const API_KEY = process.env.API_KEY;
if (!API_URL) throw new Error("set API_URL");

const MUTATION = `mutation Submit {
  submitAnalysis(input: {fen: "8/8/6P1/4R3/8/6k1/2r5/6K1 b - - 0 1", numMovesToReturn: 2}) {
    id
    status
    fen
  }
}`;

const profile = mkdtempSync(join(tmpdir(), "graphiql-chromium-"));
// A fresh, empty profile each run.
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  viewport: { width: 1400, height: 800 },
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
let failure = null;
const page = browser.pages()[0] ?? (await browser.newPage());
try {
  const origin = new URL(API_URL).origin;
  const foreign = [];
  page.on("pageerror", (error) => console.log(`page error: ${error.message}`));
  // As on a network without internet: only the API answers.
  await page.route("**/*", (route) => {
    const url = route.request().url();
    if (url.startsWith(origin) || url.startsWith("data:")) return route.continue();
    foreign.push(url);
    return route.abort();
  });
  const query = process.env.QUERY ?? MUTATION;
  const url = `${API_URL}?query=${encodeURIComponent(query)}`;
  await page.goto(url, { waitUntil: "load", timeout: WAIT_MS });
  await page.waitForSelector(".graphiql-execute-button", { timeout: WAIT_MS });
  if (API_KEY) {
    // As a person would: the Headers tab, then the key in its editor.
    await page.getByRole("button", { name: "Headers" }).click();
    const editor = page.locator(".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror");
    await editor.click();
    await page.keyboard.insertText(JSON.stringify({ Authorization: `Bearer ${API_KEY}` }));
  }
  await page.click(".graphiql-execute-button");
  const result = page.locator(".result-window");
  const expected = process.env.EXPECT
    ? result.getByText(process.env.EXPECT)
    : result.getByText('"QUEUED"').or(result.getByText('"DONE"')).or(result.getByText('"RUNNING"'));
  await expected.first().waitFor({ timeout: WAIT_MS });
  const text = await result.innerText();
  const field = process.env.QUERY ? "" : '"submitAnalysis"';
  if (!text.includes(field) || !text.includes('"id"')) {
    throw new Error(`the result pane shows no analysis: ${text.slice(0, 300)}`);
  }
  await page.screenshot({ path: SCREENSHOT });
  if (foreign.length) throw new Error(`the page asked other hosts: ${foreign.join(", ")}`);
  console.log(`ok GraphiQL ran the ${API_KEY ? "operation with a key" : "mutation"}; screenshot in ${SCREENSHOT}`);
} catch (error) {
  failure = error;
  await page.screenshot({ path: SCREENSHOT }).catch(() => {});
  console.log(`FAIL GraphiQL: ${error?.stack ?? error}`);
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(failure ? 1 : 0);
