/**
 * The WebSocket to `/ws`: connect, authenticate, resume with `since`, keep alive, and
 * come back by itself after any loss with exponential backoff and jitter.
 *
 * State machine (ConnState):
 *   CONNECTING ──snapshot/synced──▶ LIVE ──close/gap/silence──▶ RECONNECTING ─┐
 *        ▲                                                                    │
 *        └──────────────────────────── after the backoff delay ◀──────────────┘
 *   any state ──4001 and no way to get a new token──▶ STOPPED
 *
 * What the page keeps while away: the feeds (tasks, seq, count of each) stay on screen;
 * the next connection sends `since` = the own feed's last applied seq and `since_feeds`
 * the others', and receives the missed events (or a snapshot). A seq gap in any feed, a
 * malformed frame or a silent socket drops the connection and resumes at once.
 */

import { Applied } from "./feed.js";
import * as wire from "./wire.js";

export const ConnState = Object.freeze({
  CONNECTING: "connecting",
  LIVE: "live",
  RECONNECTING: "reconnecting",
  STOPPED: "stopped",
});

const PING_EVERY_MS = 25_000;
const PONG_WITHIN_MS = 10_000;
const HANDSHAKE_WITHIN_MS = 10_000;
const BACKOFF_BASE_MS = 400;
const BACKOFF_CAP_MS = 10_000;

/** Full-jitter-ish exponential backoff: between half and all of base·2^attempt, capped. */
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 10));
  return Math.round(ceiling * (0.5 + random() / 2));
}

/** The server's 4001 close reason (its error code) → why the page stopped. */
export function refusal(reason) {
  if (reason === "invalid_token") return "invalid";
  if (reason === "revoked" || reason === "token_revoked") return "revoked";
  return "expired";
}

export class Connection {
  #ws = null;
  #attempt = 0;
  #retryTimer = 0;
  #pingTimer = 0;
  #silenceTimer = 0;
  #replaying = false;
  #listeners = new Set();

  constructor({ url, feed, session }) {
    this.url = url;
    this.feed = feed;
    this.session = session;
    this.state = ConnState.CONNECTING;
    /** "snapshot" or "replay": how the last (re)connection caught up. */
    this.lastSync = null;
    /** Why it stopped: "expired" | "invalid" | "revoked" (the server's 4001 reason). */
    this.stopReason = null;
    /** Whether any connection of this page ever got as far as LIVE. */
    this.everLive = false;
    session.onChange((token) => this.#refreshAuth(token));
    window.addEventListener("online", () => this.retryNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.retryNow();
    });
  }

  /** `fn(state)` on every state change. */
  onState(fn) {
    this.#listeners.add(fn);
  }

  start() {
    this.#connect();
  }

  /** Skip the rest of the backoff wait (the network came back, the tab became visible). */
  retryNow() {
    if (this.state === ConnState.RECONNECTING && this.#ws === null) this.#connect();
  }

  #setState(state) {
    if (this.state === state) return;
    this.state = state;
    for (const fn of this.#listeners) fn(state);
  }

  #connect() {
    window.clearTimeout(this.#retryTimer);
    const ws = new WebSocket(this.url);
    this.#ws = ws;
    this.#replaying = false;
    ws.onopen = () => {
      if (ws !== this.#ws) return;
      const since = this.feed.known ? this.feed.seq : undefined;
      this.#replaying = since !== undefined;
      ws.send(wire.encodeAuth(this.session.token, since, since === undefined ? null : this.feed.sinceFeeds()));
      this.#expectWithin(HANDSHAKE_WITHIN_MS);
    };
    ws.onmessage = (event) => this.#onFrame(ws, event.data);
    ws.onclose = (event) => this.#onClose(ws, event.code, event.reason);
    ws.onerror = () => {
      /* a close event always follows */
    };
  }

  #onFrame(ws, data) {
    if (ws !== this.#ws) return;
    let msg;
    try {
      msg = wire.parseServerMessage(data);
    } catch (err) {
      console.warn("taskbell: dropping the connection after a bad frame:", err.message);
      this.feed.forgetSeq();
      this.#drop(ws, "bad frame");
      return;
    }
    if (this.state === ConnState.LIVE) this.#heard();
    switch (msg.type) {
      case "snapshot":
        this.feed.reset(msg);
        this.#becameLive("snapshot");
        break;
      case "synced":
        if (this.feed.synced(msg) === Applied.GAP) {
          this.feed.forgetSeq();
          this.#drop(ws, "replay did not end at its own seq");
        } else {
          this.#becameLive("replay");
        }
        break;
      case "event":
        if (this.feed.apply(msg, this.#replaying ? "replay" : "live") === Applied.GAP) {
          this.#drop(ws, "seq gap");
        }
        break;
      case "feed.joined":
        this.feed.joined(msg);
        break;
      case "feed.left":
        this.feed.left(msg);
        break;
      case "ping":
        ws.send(wire.encodePong());
        this.#checkHeartbeat(ws, msg.feeds);
        break;
      case "pong":
        break;
      case "seen":
        this.onSeen?.(msg);
        break;
      case "error":
        console.warn("taskbell: server error message", msg.code, msg.message);
        break;
      default:
        // parseServerMessage already refused every other type.
        break;
    }
  }

  /** The server's heartbeat says where each followed feed stands; if what we show differs
   * (a bug, a corrupted frame), start again from a snapshot instead of showing it wrong. */
  #checkHeartbeat(ws, feeds) {
    if (!feeds || this.state !== ConnState.LIVE || !this.feed.known) return;
    if (!this.feed.agrees(feeds)) {
      console.warn("taskbell: the feed differs from the server's heartbeat; resynchronising");
      this.lastRepair = Date.now();
      this.feed.forgetSeq();
      this.#drop(ws, "heartbeat differs");
    }
  }

  #becameLive(how) {
    this.#replaying = false;
    this.#attempt = 0;
    this.lastSync = how;
    this.everLive = true;
    this.#heard();
    window.clearInterval(this.#pingTimer);
    this.#pingTimer = window.setInterval(() => this.#ping(), PING_EVERY_MS);
    this.#setState(ConnState.LIVE);
  }

  #ping() {
    const ws = this.#ws;
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    ws.send(wire.encodePing());
    this.#expectWithin(PONG_WITHIN_MS);
  }

  /** Drop the socket unless something arrives within `ms`. */
  #expectWithin(ms) {
    window.clearTimeout(this.#silenceTimer);
    const ws = this.#ws;
    this.#silenceTimer = window.setTimeout(() => {
      if (ws === this.#ws) this.#drop(ws, "silent connection");
    }, ms);
  }

  #heard() {
    window.clearTimeout(this.#silenceTimer);
  }

  /** Close from our side and resume at once (seq gap, bad frame, silence). */
  #drop(ws, reason) {
    try {
      ws.close(wire.CloseCode.CLIENT_RECONNECT, reason);
    } catch {
      /* already closing */
    }
    this.#lost(0);
  }

  #onClose(ws, code, reason) {
    if (ws !== this.#ws) return;
    const C = wire.CloseCode;
    switch (code) {
      case C.NOT_AUTHENTICATED:
        this.#ws = null;
        this.#clearTimers();
        void this.#reauthenticate(reason);
        return;
      case C.TOO_SLOW:
        // Our queue overflowed on the server: resume with since, almost at once.
        this.#lost(Math.round(Math.random() * 250));
        return;
      case C.BAD_MESSAGE:
      case C.TOO_BIG:
        // The server and the page disagree about the protocol: start over from a snapshot.
        this.feed.forgetSeq();
        this.#lost(this.#nextDelay());
        return;
      default:
        // 1012 restarting, 1013 try later, 1006 network loss, 1000/1001: come back later.
        this.#lost(this.#nextDelay(code === C.TRY_AGAIN_LATER ? 1_000 : 0));
    }
  }

  #nextDelay(atLeast = 0) {
    const delay = Math.max(atLeast, backoffDelay(this.#attempt));
    this.#attempt += 1;
    return delay;
  }

  #lost(delay) {
    this.#ws = null;
    this.#clearTimers();
    this.#setState(ConnState.RECONNECTING);
    this.#retryTimer = window.setTimeout(() => this.#connect(), delay);
  }

  async #reauthenticate(reason) {
    this.#setState(ConnState.RECONNECTING);
    if (this.#attempt < 5 && (await this.session.renew())) {
      // session.set() triggered #refreshAuth, which found no socket: connect after a pause.
      this.#retryTimer = window.setTimeout(() => this.#connect(), this.#nextDelay());
      return;
    }
    this.stopReason = refusal(reason);
    this.#setState(ConnState.STOPPED);
  }

  /** A new token while connected extends the server-side session; while stopped, restart. */
  #refreshAuth(token) {
    const ws = this.#ws;
    if (ws && ws.readyState === WebSocket.OPEN && this.state === ConnState.LIVE) {
      ws.send(wire.encodeAuth(token));
    } else if (this.state === ConnState.STOPPED) {
      this.stopReason = null;
      this.#attempt = 0;
      this.#setState(ConnState.RECONNECTING);
      this.#connect();
    }
  }

  #clearTimers() {
    window.clearTimeout(this.#retryTimer);
    window.clearTimeout(this.#silenceTimer);
    window.clearInterval(this.#pingTimer);
  }
}
