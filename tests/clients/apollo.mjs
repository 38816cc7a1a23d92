// Real clients against a live API: Apollo Client 4 (HTTP + graphql-ws, split by
// operation type), Apollo's plain HttpLink with multipart subscriptions, Apollo's
// PersistedQueryLink, and the legacy subscriptions-transport-ws client.
//
//   API_URL=http://127.0.0.1:8000/graphql [API_KEY=cak_…] node apollo.mjs
//
// With API_KEY every client sends it, as an application would: HttpLink's headers,
// graphql-ws's and subscriptions-transport-ws's connectionParams. Without it they send
// none (the API must allow anonymous use).
//
// Prints one line per check ("ok <name>" or "FAIL <name>: <why>") and exits 1 if any
// check failed. Every wait is bounded.

import { createHash } from "node:crypto";

import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition } from "@apollo/client/utilities";
import { print } from "graphql";
import { createClient } from "graphql-ws";
import { SubscriptionClient } from "subscriptions-transport-ws";
import WebSocket from "ws";

const API_URL = process.env.API_URL;
if (!API_URL) throw new Error("set API_URL");
const WS_URL = API_URL.replace(/^http/, "ws");
const REFERENCE_FEN = "8/8/6P1/4R3/8/6k1/2r5/6K1 b - - 0 1";
const WAIT_MS = 30_000;
const API_KEY = process.env.API_KEY ?? "";
// Apollo's usual pattern: an empty value when there is no key, which the API reads as none.
const authorization = API_KEY ? `Bearer ${API_KEY}` : "";
const headers = { authorization };
const connectionParams = { authorization };

const SUBMIT = gql`
  mutation Submit($input: SubmitAnalysisInput!) {
    submitAnalysis(input: $input) { id status }
  }
`;
const COMPLETED = gql`
  subscription Completed($id: ID!) {
    analysisCompleted(id: $id) {
      id status engine
      result { rank mateScore centipawnScore pv pvSan depth }
    }
  }
`;
const PROGRESS = gql`
  subscription Progress($id: ID!) {
    analysisProgress(id: $id) {
      analysis { id status }
      depth nodes elapsed
      lines { rank pv centipawnScore mateScore winPercent wdl { win draw loss } }
    }
  }
`;
const ITALIAN = "r1bqk1nr/pppp1ppp/2n5/2b1p3/2B1P3/5N2/PPPP1PPP/RNBQK2R w KQkq - 4 4";
const ANALYSIS = gql`
  query Analysis($id: ID!) {
    analysis(id: $id) { id status result { rank mateScore pv } }
  }
`;

const results = [];
async function check(name, body) {
  try {
    await withTimeout(body(), WAIT_MS, name);
    results.push(true);
    console.log(`ok ${name}`);
  } catch (error) {
    results.push(false);
    console.log(`FAIL ${name}: ${error?.stack ?? error}`);
  }
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function assert(condition, message) {
  if (!condition) throw new Error(message);
}

/** The first value an Apollo subscription emits, then unsubscribe. */
function firstEvent(observable) {
  return new Promise((resolve, reject) => {
    const subscription = observable.subscribe({
      next: (value) => {
        subscription.unsubscribe();
        resolve(value);
      },
      error: reject,
      complete: () => reject(new Error("completed without a value")),
    });
  });
}

/** Every value an Apollo subscription emits, up to its completion. */
function allEvents(observable) {
  return new Promise((resolve, reject) => {
    const values = [];
    observable.subscribe({
      next: (value) => values.push(value),
      error: reject,
      complete: () => resolve(values),
    });
  });
}

/** Submit a search of its own (fresh: no cache, no shared run) and follow its progress. */
async function followProgress(apollo) {
  const submitted = await apollo.mutate({
    mutation: SUBMIT,
    variables: { input: { fen: ITALIAN, timeLimit: 2.5, numMovesToReturn: 2, fresh: true } },
  });
  const id = submitted.data.submitAnalysis.id;
  const events = (await allEvents(apollo.subscribe({ query: PROGRESS, variables: { id } })))
    .map((event) => event.data.analysisProgress);
  const last = events.at(-1);
  assert(last.analysis.status === "DONE", `last status ${last.analysis.status}`);
  const during = events.slice(0, -1);
  assert(during.length >= 2, `${during.length} progress events before the end`);
  assert(during.every((event) => event.analysis.status === "RUNNING"), "RUNNING while it deepens");
  const depths = during.map((event) => event.depth);
  assert(depths.every((depth, i) => i === 0 || depth >= depths[i - 1]), `depths ${depths}`);
  const line = during.at(-1).lines[0];
  assert(line.pv.length > 0 && line.winPercent >= 0 && line.winPercent <= 100, JSON.stringify(line));
  assert(line.wdl && line.wdl.win + line.wdl.draw + line.wdl.loss === 1000, JSON.stringify(line.wdl));
}

function assertReferenceResult(analysis) {
  assert(analysis.status === "DONE", `status ${analysis.status}`);
  const best = analysis.result[0];
  assert(best.mateScore === -2, `mateScore ${best.mateScore}`);
  assert(best.pv.slice(0, 3).join(" ") === "c2c1 e5e1 c1e1", `pv ${best.pv}`);
}

// --- Apollo Client: HttpLink for queries and mutations, GraphQLWsLink for subscriptions.
const wsClient = createClient({ url: WS_URL, webSocketImpl: WebSocket, lazy: true, connectionParams });
const splitLink = ApolloLink.split(
  ({ query }) => {
    const definition = getMainDefinition(query);
    return definition.kind === "OperationDefinition" && definition.operation === "subscription";
  },
  new GraphQLWsLink(wsClient),
  new HttpLink({ uri: API_URL, headers }),
);
const client = new ApolloClient({ link: splitLink, cache: new InMemoryCache() });

await check("apollo: submit, analysisCompleted over graphql-ws, cached analysis(id)", async () => {
  const submitted = await client.mutate({
    mutation: SUBMIT,
    variables: { input: { fen: REFERENCE_FEN, numMovesToReturn: 2 } },
  });
  const { id, status } = submitted.data.submitAnalysis;
  assert(status === "QUEUED" || status === "RUNNING", `status ${status}`);
  const event = await firstEvent(client.subscribe({ query: COMPLETED, variables: { id } }));
  assertReferenceResult(event.data.analysisCompleted);
  const read = await client.query({ query: ANALYSIS, variables: { id }, fetchPolicy: "network-only" });
  assertReferenceResult(read.data.analysis);
  // The normalising cache holds one Analysis entity under its id...
  const cached = client.cache.extract();
  assert(cached[`Analysis:${id}`]?.status === "DONE", "Analysis entity not normalised");
  // ...which a cache-only read answers without the network.
  const fromCache = await client.query({ query: ANALYSIS, variables: { id }, fetchPolicy: "cache-only" });
  assert(fromCache.data.analysis.id === id, "cache-only read failed");
});

await check("apollo: viewer names the key's tenant", async () => {
  const expected = process.env.API_KEY_NAME ?? "anonymous";
  const answer = await client.query({ query: gql`{ viewer { name } }`, fetchPolicy: "network-only" });
  assert(answer.data.viewer.name === expected, `viewer ${answer.data.viewer.name}`);
});

await check("apollo: BAD_USER_INPUT for a bad FEN", async () => {
  let error;
  try {
    await client.mutate({ mutation: SUBMIT, variables: { input: { fen: "not a fen" } } });
  } catch (caught) {
    error = caught;
  }
  assert(error, "the mutation should have failed");
  const graphqlError = error.errors?.[0];
  assert(graphqlError, `not a GraphQL error: ${error.name} ${error.message}`);
  assert(graphqlError.extensions.code === "BAD_USER_INPUT", `code ${graphqlError.extensions.code}`);
  assert(graphqlError.message.startsWith("fen:"), graphqlError.message);
});

await check("apollo: request errors read from a 400 application/graphql-response+json", async () => {
  let status;
  const fetchAndRecord = async (...args) => {
    const response = await fetch(...args);
    status = response.status;
    return response;
  };
  const strict = new ApolloClient({
    link: new HttpLink({ uri: API_URL, headers, fetch: fetchAndRecord }),
    cache: new InMemoryCache(),
  });
  let error;
  try {
    await strict.query({ query: gql`{ noSuchField }` });
  } catch (caught) {
    error = caught;
  }
  assert(status === 400, `HTTP status ${status}`);
  assert(error?.errors?.[0]?.extensions?.code === "GRAPHQL_VALIDATION_FAILED",
    `expected GraphQL errors, got ${error?.name}: ${error?.message}`);
});

await check("apollo: analysisCompleted over HTTP multipart through a plain HttpLink", async () => {
  const plain = new ApolloClient({
    link: new HttpLink({ uri: API_URL, headers }),
    cache: new InMemoryCache(),
  });
  const submitted = await plain.mutate({
    mutation: SUBMIT,
    variables: { input: { fen: REFERENCE_FEN } },
  });
  const id = submitted.data.submitAnalysis.id;
  const event = await firstEvent(plain.subscribe({ query: COMPLETED, variables: { id } }));
  assertReferenceResult(event.data.analysisCompleted);
});

await check("apollo: analysisProgress over graphql-ws, depth by depth, then DONE", async () => {
  await followProgress(client);
});

await check("apollo: analysisProgress over HTTP multipart through a plain HttpLink", async () => {
  const plain = new ApolloClient({
    link: new HttpLink({ uri: API_URL, headers }),
    cache: new InMemoryCache(),
  });
  await followProgress(plain);
});

await check("apollo: submitGameAnalysis from a PGN, gameAnalysisProgress to the end", async () => {
  const pgn = '[White "Anna"]\n[Black "Ben"]\n\n1. e4 e5 2. Qh5 Nc6 3. Bc4 Nf6?? 4. Qxf7# 1-0';
  const submitted = await client.mutate({
    mutation: gql`mutation Game($input: SubmitGameAnalysisInput!) {
      submitGameAnalysis(input: $input) { id status progress { done total } }
    }`,
    variables: { input: { pgn, depthLimit: 10 } },
  });
  const { id, progress } = submitted.data.submitGameAnalysis;
  assert(progress.total === 8, `total ${progress.total}`);
  const events = (await allEvents(client.subscribe({
    query: gql`subscription Review($id: ID!) {
      gameAnalysisProgress(id: $id) {
        id status progress { done total } opening { eco name }
        plies { ply san eval { winPercent } judgment { name comment } accuracy }
        white { accuracy acpl blunders } black { accuracy acpl blunders }
      }
    }`,
    variables: { id },
  }))).map((event) => event.data.gameAnalysisProgress);
  const last = events.at(-1);
  assert(last.status === "DONE" && last.progress.done === 8, `last ${JSON.stringify(last.progress)}`);
  const done = events.map((event) => event.progress.done);
  assert(done.every((n, i) => i === 0 || n >= done[i - 1]), `progress ${done}`);
  assert(last.plies[5].san === "Nf6" && last.plies[5].judgment?.name === "BLUNDER",
    JSON.stringify(last.plies[5]));
  assert(last.black.blunders >= 1 && last.white.accuracy > last.black.accuracy,
    `${JSON.stringify(last.white)} ${JSON.stringify(last.black)}`);
  assert(last.opening?.eco === "C20", JSON.stringify(last.opening));
});

await check("apollo: the same position again is answered from the cache", async () => {
  const input = { fen: REFERENCE_FEN, depthLimit: 8, timeLimit: 10 };
  const first = await client.mutate({ mutation: SUBMIT, variables: { input } });
  const id = first.data.submitAnalysis.id;
  await firstEvent(client.subscribe({ query: COMPLETED, variables: { id } }));
  const again = await client.mutate({
    mutation: gql`mutation Again($input: SubmitAnalysisInput!) {
      submitAnalysis(input: $input) { id status cached result { mateScore } }
    }`,
    variables: { input },
  });
  const answer = again.data.submitAnalysis;
  assert(answer.status === "DONE" && answer.cached, `status ${answer.status}, cached ${answer.cached}`);
  assert(answer.result[0].mateScore === -2, `mateScore ${answer.result[0].mateScore}`);
});

await check("apollo: automatic persisted queries over GET and POST", async () => {
  const seen = [];
  const recordingFetch = async (uri, options) => {
    const response = await fetch(uri, options);
    seen.push({ method: options.method, hasQuery: /query/.test(String(options.body ?? uri).replace(/persistedQuery/g, "")), status: response.status });
    return response;
  };
  const sha256 = (text) => createHash("sha256").update(text).digest("hex");
  const persisted = new ApolloClient({
    link: new PersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
      new HttpLink({ uri: API_URL, headers, fetch: recordingFetch }),
    ),
    cache: new InMemoryCache(),
  });
  const query = gql`query Persisted($id: ID!) { analysis(id: $id) { id } }`;
  const variables = { id: "00000000-0000-0000-0000-000000000000" };
  const first = await persisted.query({ query, variables, fetchPolicy: "network-only" });
  assert(first.data.analysis === null, "first answer");
  // Unknown hash over GET, then the document itself over POST.
  assert(seen.length === 2, `requests: ${JSON.stringify(seen)}`);
  assert(seen[0].method === "GET" && !seen[0].hasQuery, `first: ${JSON.stringify(seen[0])}`);
  assert(seen[1].method === "POST" && seen[1].hasQuery, `second: ${JSON.stringify(seen[1])}`);
  const again = await persisted.query({ query, variables, fetchPolicy: "network-only" });
  assert(again.data.analysis === null, "second answer");
  assert(seen.length === 3 && seen[2].method === "GET" && !seen[2].hasQuery,
    `the hash alone should do now: ${JSON.stringify(seen)}`);
});

await check("subscriptions-transport-ws: analysisCompleted over legacy graphql-ws", async () => {
  const submitted = await client.mutate({
    mutation: SUBMIT,
    variables: { input: { fen: REFERENCE_FEN } },
  });
  const id = submitted.data.submitAnalysis.id;
  const legacy = new SubscriptionClient(WS_URL, { reconnect: false, connectionParams }, WebSocket);
  try {
    const event = await new Promise((resolve, reject) => {
      const subscription = legacy
        .request({ query: print(COMPLETED), variables: { id } })
        .subscribe({
          next: (value) => {
            subscription.unsubscribe();
            resolve(value);
          },
          error: reject,
        });
    });
    assert(!event.errors, JSON.stringify(event.errors));
    assertReferenceResult(event.data.analysisCompleted);
  } finally {
    legacy.close();
  }
});

await wsClient.dispose();
const failed = results.filter((passed) => !passed).length;
console.log(`${results.length - failed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
