// The GraphQL side of the page, as a frontend team would write it with Apollo Client 4:
// queries and mutations over HTTP, subscriptions over a WebSocket (graphql-ws), one
// normalised cache. Nothing here knows about the DOM.

import {
  ApolloClient,
  ApolloLink,
  CombinedGraphQLErrors,
  HttpLink,
  InMemoryCache,
  ServerError,
  gql,
  type TypedDocumentNode,
} from "@apollo/client";
import { GraphQLWsLink } from "@apollo/client/link/subscriptions";
import { getMainDefinition } from "@apollo/client/utilities";
import { createClient, type Client as WsClient } from "graphql-ws";

// --- What the page asks for. The types mirror the selections (api/schema.graphql).

export type Status = "QUEUED" | "RUNNING" | "DONE" | "FAILED" | "CANCELED";
export type JudgmentName = "INACCURACY" | "MISTAKE" | "BLUNDER";

export interface Eval {
  centipawnScore: number | null;
  mateScore: number | null;
  winPercent: number;
}

export interface Ply {
  ply: number;
  moveNumber: number;
  color: "WHITE" | "BLACK";
  san: string;
  uci: string;
  fenBefore: string;
  eval: Eval | null;
  bestMove: string | null;
  bestMoveSan: string | null;
  bestLineSan: string[] | null;
  judgment: { name: JudgmentName; comment: string } | null;
  accuracy: number | null;
  centipawnLoss: number | null;
}

export interface Side {
  accuracy: number;
  acpl: number;
  inaccuracies: number;
  mistakes: number;
  blunders: number;
}

export interface Game {
  __typename?: "GameAnalysis";
  id: string;
  status: Status;
  error: string | null;
  headers: { name: string; value: string }[];
  initialFen: string;
  opening: { eco: string; name: string } | null;
  progress: { done: number; total: number };
  depthLimit: number | null;
  plies: Ply[];
  white: Side | null;
  black: Side | null;
}

export interface Line {
  rank: number;
  centipawnScore: number | null;
  mateScore: number | null;
  pv: string[];
  pvSan: string[];
  depth: number;
  winPercent: number;
  wdl: { win: number; draw: number; loss: number } | null;
}

export interface Analysis {
  id: string;
  status: Status;
  fen: string;
  gameOver: string | null;
  error: string | null;
  engine: string | null;
  cached: boolean;
}

export interface Progress {
  analysis: Analysis;
  depth: number | null;
  nodes: number | null;
  elapsed: number | null;
  lines: Line[];
}

// One fragment for the game, used by the mutation, the query and the subscription: the
// cache stores one GameAnalysis object per id, and whichever operation brings a newer
// version of it updates everything that reads it.
const REVIEW = gql`
  fragment Review on GameAnalysis {
    id
    status
    error
    headers {
      name
      value
    }
    initialFen
    opening {
      eco
      name
    }
    progress {
      done
      total
    }
    depthLimit
    plies {
      ply
      moveNumber
      color
      san
      uci
      fenBefore
      eval {
        centipawnScore
        mateScore
        winPercent
      }
      bestMove
      bestMoveSan
      bestLineSan
      judgment {
        name
        comment
      }
      accuracy
      centipawnLoss
    }
    white {
      accuracy
      acpl
      inaccuracies
      mistakes
      blunders
    }
    black {
      accuracy
      acpl
      inaccuracies
      mistakes
      blunders
    }
  }
`;

export const SUBMIT_GAME: TypedDocumentNode<
  { submitGameAnalysis: Game },
  { input: { pgn: string; depthLimit: number; timeLimit: number } }
> = gql`
  mutation SubmitGame($input: SubmitGameAnalysisInput!) {
    submitGameAnalysis(input: $input) {
      ...Review
    }
  }
  ${REVIEW}
`;

export const GAME: TypedDocumentNode<{ gameAnalysis: Game | null }, { id: string }> = gql`
  query Game($id: ID!) {
    gameAnalysis(id: $id) {
      ...Review
    }
  }
  ${REVIEW}
`;

// Emits the game at once (so subscribing again after a lost connection picks it up
// where it is), then as positions finish, then completes once it is finished.
export const FOLLOW_GAME: TypedDocumentNode<{ gameAnalysisProgress: Game }, { id: string }> = gql`
  subscription FollowGame($id: ID!) {
    gameAnalysisProgress(id: $id) {
      ...Review
    }
  }
  ${REVIEW}
`;

const LINE = gql`
  fragment EngineLine on Line {
    rank
    centipawnScore
    mateScore
    pv
    pvSan
    depth
    winPercent
    wdl {
      win
      draw
      loss
    }
  }
`;

export const SUBMIT_POSITION: TypedDocumentNode<
  { submitAnalysis: Analysis },
  { input: { fen: string; numMovesToReturn: number; timeLimit: number } }
> = gql`
  mutation SubmitPosition($input: SubmitAnalysisInput!) {
    submitAnalysis(input: $input) {
      id
      status
      fen
      gameOver
      error
      engine
      cached
    }
  }
`;

export const FOLLOW_POSITION: TypedDocumentNode<{ analysisProgress: Progress }, { id: string }> =
  gql`
    subscription FollowPosition($id: ID!) {
      analysisProgress(id: $id) {
        analysis {
          id
          status
          fen
          gameOver
          error
          engine
          cached
        }
        depth
        nodes
        elapsed
        lines {
          ...EngineLine
        }
      }
    }
    ${LINE}
  `;

// --- The client.

export interface Connection {
  apollo: ApolloClient;
  /** Close the WebSocket and stop retrying (when the key changes). */
  dispose(): void;
}

/** What the WebSocket is doing, for the banner that tells people. */
export type SocketState =
  | { kind: "connected"; after: number }
  | { kind: "retrying"; attempt: number; code: number | null }
  | { kind: "closed" };

const PING_EVERY_MS = 10_000;
const PONG_WITHIN_MS = 5_000;
const RETRY_FIRST_MS = 500;
const RETRY_MOST_MS = 15_000;

/**
 * An Apollo Client for the API at `url` (http or https), sending `key` when there is
 * one: as `Authorization: Bearer …` on HTTP and in the WebSocket's connectionParams.
 */
export function connect(
  url: string,
  key: string,
  onSocket: (state: SocketState) => void,
): Connection {
  // "" (no key): the API treats the request as anonymous, where it admits that.
  const authorization = key ? `Bearer ${key}` : "";
  let attempts = 0;
  let socket: WebSocket | null = null;
  let pongTimer: ReturnType<typeof setTimeout> | undefined;

  const ws: WsClient = createClient({
    url: url.replace(/^http/, "ws"),
    connectionParams: { authorization },
    lazy: true,
    // A lost connection is retried for as long as the page is open, waiting a little
    // longer each time (at most 15 s). graphql-ws sends the subscriptions that were
    // open again once it is back, and the API answers each with the current state.
    retryAttempts: Number.POSITIVE_INFINITY,
    // (4401, a refused key, is never retried by graphql-ws; 4403, a refused origin, not
    // by us: waiting would not change either.)
    shouldRetry: (event) => !isCloseEvent(event) || event.code !== 4403,
    retryWait: async (retries) => {
      const wait = Math.min(RETRY_FIRST_MS * 2 ** retries, RETRY_MOST_MS);
      await new Promise((resolve) => setTimeout(resolve, wait + Math.random() * 300));
    },
    // A connection that went silent (a phone changing networks) shows no close event:
    // ping it, and close it ourselves if no pong comes, so that the retry starts.
    keepAlive: PING_EVERY_MS,
    on: {
      connected: (opened) => {
        socket = opened as WebSocket;
        onSocket({ kind: "connected", after: attempts });
        attempts = 0;
      },
      closed: (event) => {
        socket = null;
        clearTimeout(pongTimer);
        const code = isCloseEvent(event) ? event.code : null;
        // 1000: closed on purpose (no subscription left); 4401: the key was refused.
        if (code === 1000 || code === 4401) onSocket({ kind: "closed" });
        else onSocket({ kind: "retrying", attempt: ++attempts, code });
      },
      ping: (received) => {
        if (received) return;
        pongTimer = setTimeout(() => {
          if (socket?.readyState === WebSocket.OPEN) socket.close(4408, "no pong");
        }, PONG_WITHIN_MS);
      },
      pong: (received) => {
        if (received) clearTimeout(pongTimer);
      },
    },
  });

  // Subscriptions go over the WebSocket; queries and mutations over HTTP.
  const link = ApolloLink.split(
    ({ query }) => {
      const definition = getMainDefinition(query);
      return definition.kind === "OperationDefinition" && definition.operation === "subscription";
    },
    new GraphQLWsLink(ws),
    new HttpLink({ uri: url, headers: authorization ? { authorization } : {} }),
  );

  const cache = new InMemoryCache({
    typePolicies: {
      Query: {
        fields: {
          // `gameAnalysis(id)` reads the GameAnalysis the cache already holds under that
          // id (put there by the mutation or the subscription), without a request.
          gameAnalysis: {
            // (A null stored for an unknown id stays null.)
            read: (existing, { args, toReference }) =>
              existing !== undefined
                ? existing
                : toReference({ __typename: "GameAnalysis", id: args?.id }),
          },
        },
      },
      GameAnalysis: {
        fields: {
          // Each event carries every ply: the new list replaces the old one.
          plies: { merge: false },
        },
      },
    },
  });

  return {
    apollo: new ApolloClient({ link, cache }),
    dispose: () => {
      clearTimeout(pongTimer);
      void ws.dispose();
    },
  };
}

function isCloseEvent(value: unknown): value is { code: number; reason: string } {
  return typeof value === "object" && value !== null && "code" in value && "reason" in value;
}

// --- Errors, as people should read them.

export interface Problem {
  /** The server's message, or what went wrong on the way. */
  message: string;
  /** `extensions.code` when the server gave one (BAD_USER_INPUT, QUOTA_EXCEEDED, …). */
  code: string | null;
  /** Seconds to wait before trying again (`extensions.retryAfter`). */
  retryAfter: number | null;
}

interface ErrorBody {
  message?: string;
  extensions?: { code?: string; retryAfter?: number };
}

/** What an error from Apollo Client says, in the API's terms. */
export function describe(error: unknown): Problem {
  let first: ErrorBody | undefined;
  if (CombinedGraphQLErrors.is(error)) {
    first = error.errors[0] as ErrorBody;
  } else if (ServerError.is(error)) {
    // A non-2xx answer (401 without a key, 503 while the server is at its limit): the
    // body still holds the GraphQL errors.
    try {
      first = (JSON.parse(error.bodyText) as { errors?: ErrorBody[] }).errors?.[0];
    } catch {
      first = { message: `the server answered HTTP ${error.statusCode}` };
    }
  } else if (error instanceof Error && /Socket closed with event 4401/.test(error.message)) {
    first = { message: "the key was refused", extensions: { code: "UNAUTHENTICATED" } };
  }
  if (first) {
    const extensions = first.extensions ?? {};
    return {
      message: first.message ?? "the server refused the request",
      code: extensions.code ?? null,
      retryAfter: typeof extensions.retryAfter === "number" ? extensions.retryAfter : null,
    };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { message: `could not reach the server (${message})`, code: null, retryAfter: null };
}
