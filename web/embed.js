/**
 * The embeddable bell: `<taskbell-bell token="...">` on a host page of another origin.
 *
 *   <script type="module" src="https://taskbell.example/embed.js"></script>
 *   <taskbell-bell token="..."></taskbell-bell>
 *
 * or `element.tokenProvider = async () => token` (asked again whenever the server refuses
 * the token, and handed on to the open panel). The element shows a real `<button>` whose
 * badge counts every feed the person follows (`aria-label="N process tasks"`, no badge at
 * 0) and, on click, Enter or Space, the panel from Taskbell's own origin in a popover frame
 * (`/#token=...`), closed with Escape (also inside the panel: it asks with
 * `{type: "taskbell.close"}` once the bell has said `{type: "taskbell.bell"}` to it) or a
 * click outside, focus back on the bell. Its words are in the person's language like the
 * panel's (the token's `locale` claim, else the browser's; i18n.js), without touching the
 * host page's own `lang`.
 *
 * Everything lives in an open shadow root styled by a constructable stylesheet: nothing
 * inline is added to the host document, so a strict host CSP (`style-src 'self'`) holds.
 * The socket speaks /ws through the panel's own modules (connection.js, feed.js), which
 * have no side effects on import. The WebSocket's Origin is the host page's: the server's
 * `TASKBELL_ALLOWED_ORIGINS` must list it (or be empty), and `TASKBELL_FRAME_ANCESTORS`
 * must let the host frame the panel.
 */

import { Connection, ConnState } from "./static/js/connection.js";
import { Feed } from "./static/js/feed.js";
import { translator, wantedLocale } from "./static/js/i18n.js";

const BASE = new URL(".", import.meta.url);
const WS_URL = `${BASE.protocol === "https:" ? "wss" : "ws"}://${BASE.host}/ws`;
const SVG = "http://www.w3.org/2000/svg";

const CSS = `
:host { position: relative; display: inline-block; font: 14px/1.4 system-ui, sans-serif; color: #1d2433; }
:host([hidden]) { display: none; }
button {
  position: relative; display: inline-flex; align-items: center; justify-content: center;
  width: 40px; height: 40px; padding: 0; border: 0; border-radius: 8px;
  background: transparent; color: inherit; cursor: pointer;
}
button:hover { background: rgb(0 0 0 / 0.06); }
button:focus-visible { outline: 2px solid #3056d3; outline-offset: 2px; }
button[aria-expanded="true"] { background: rgb(48 86 211 / 0.12); }
svg { width: 22px; height: 22px; }
.badge {
  position: absolute; top: 2px; right: 0; min-width: 18px; height: 18px; padding: 0 5px;
  box-sizing: border-box; border-radius: 9px; background: #c62828; color: #fff;
  font-size: 11px; font-weight: 700; line-height: 18px; text-align: center;
}
.popover {
  position: absolute; top: calc(100% + 6px); right: 0; z-index: 2147483000;
  width: min(420px, calc(100vw - 16px)); height: min(620px, calc(100vh - 80px));
  border: 1px solid #d0d5e0; border-radius: 10px; overflow: hidden;
  background: #fff; box-shadow: 0 12px 32px rgb(0 0 0 / 0.18);
}
.popover[hidden] { display: none; }
.sr {
  position: absolute; width: 1px; height: 1px; margin: -1px; padding: 0; border: 0;
  overflow: hidden; clip-path: inset(50%); white-space: nowrap;
}
iframe { display: block; width: 100%; height: 100%; border: 0; }
@media (prefers-color-scheme: dark) {
  :host { color: #e6e9f0; }
  button:hover { background: rgb(255 255 255 / 0.08); }
  .popover { border-color: #3a4153; background: #1b1f2a; }
}
`;

let sheet = null;
function styles() {
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(CSS);
  }
  return sheet;
}

/** A claim of the token (`sub` names the own feed, `locale` the language), or null: the
 * server is the one that checks the token. */
function claimOf(token, name) {
  try {
    const part = token.split(".")[1] ?? "";
    const claims = JSON.parse(atob(part.replace(/-/g, "+").replace(/_/g, "/")));
    return typeof claims[name] === "string" ? claims[name] : null;
  } catch {
    return null;
  }
}

const ENGLISH = translator("en");

/** "3 process tasks" in the language of `t` (English by default). */
export function badgeLabel(n, t = ENGLISH) {
  return t("count.processTasks", { n });
}

function bellIcon() {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const d of ["M18 9a6 6 0 0 0-12 0c0 6-2.5 7.5-2.5 7.5h17S18 15 18 9", "M10.3 20a2 2 0 0 0 3.4 0"]) {
    const path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    path.setAttribute("fill", "none");
    path.setAttribute("stroke", "currentColor");
    path.setAttribute("stroke-width", "2");
    path.setAttribute("stroke-linecap", "round");
    path.setAttribute("stroke-linejoin", "round");
    svg.append(path);
  }
  return svg;
}

/** What Connection needs of a session: the token, change listeners, and a way to renew. */
class BellSession {
  #listeners = new Set();

  constructor(element) {
    this.element = element;
    this.token = null;
  }

  set(token) {
    this.token = token;
    for (const fn of this.#listeners) fn(token);
  }

  onChange(fn) {
    this.#listeners.add(fn);
  }

  /** After a 4001: ask the host's tokenProvider (if any) for a fresh token. */
  async renew() {
    const provider = this.element.tokenProvider;
    if (typeof provider !== "function") return false;
    try {
      const token = await provider();
      if (typeof token !== "string" || !token || token === this.token) return false;
      this.set(token);
      return true;
    } catch (err) {
      console.warn("taskbell-bell: the tokenProvider failed:", err);
      return false;
    }
  }
}

let ids = 0;

export class TaskbellBell extends HTMLElement {
  static observedAttributes = ["token"];

  #session = new BellSession(this);
  #feed = null;
  #connection = null;
  #provider = null;
  #button;
  #badge = null;
  #popover;
  #live;
  #frame = null;
  #refused = false;
  #shown = 0;
  #t = ENGLISH;
  #onOutside = (event) => {
    if (!event.composedPath().includes(this)) this.close({ focus: false });
  };
  #onKey = (event) => {
    if (event.key === "Escape" && this.open) {
      event.preventDefault();
      this.close();
    }
  };
  #onMessage = (event) => {
    // A panel that knows it is framed may ask to be closed.
    if (
      event.origin === BASE.origin &&
      event.source === this.#frame?.contentWindow &&
      event.data?.type === "taskbell.close"
    ) {
      this.close();
    }
  };

  constructor() {
    super();
    const root = this.attachShadow({ mode: "open" });
    root.adoptedStyleSheets = [styles()];
    const id = `taskbell-popover-${++ids}`;
    this.#button = document.createElement("button");
    this.#button.type = "button";
    this.#button.part = "button";
    this.#button.setAttribute("aria-expanded", "false");
    this.#button.setAttribute("aria-controls", id);
    this.#button.setAttribute("aria-haspopup", "dialog");
    this.#button.setAttribute("aria-label", ENGLISH("page.processTasks"));
    this.#button.dataset.testid = "bell";
    this.#button.append(bellIcon());
    this.#popover = document.createElement("div");
    this.#popover.id = id;
    this.#popover.className = "popover";
    this.#popover.part = "popover";
    this.#popover.setAttribute("role", "dialog");
    this.#popover.setAttribute("aria-label", ENGLISH("page.processTasks"));
    this.#popover.hidden = true;
    // New work is announced politely (not the count at load, nor on catching up).
    this.#live = document.createElement("span");
    this.#live.className = "sr";
    this.#live.setAttribute("aria-live", "polite");
    this.#live.dataset.testid = "announcer";
    root.append(this.#button, this.#live, this.#popover);
    this.#button.addEventListener("click", () => (this.open ? this.close() : this.show()));
    this.#popover.addEventListener("keydown", this.#onKey);
    this.#button.addEventListener("keydown", this.#onKey);
  }

  /** `async () => token`: asked for a token when none is given and after every refusal. */
  get tokenProvider() {
    return this.#provider;
  }

  set tokenProvider(fn) {
    this.#provider = fn;
    if (!this.#session.token && this.isConnected) void this.#session.renew().then(() => this.#start());
  }

  get open() {
    return !this.#popover.hidden;
  }

  /** The count shown (every followed feed), or null before the first snapshot. */
  get count() {
    return this.#feed?.known ? this.#feed.count : null;
  }

  connectedCallback() {
    document.addEventListener("keydown", this.#onKey);
    window.addEventListener("message", this.#onMessage);
    const token = this.getAttribute("token");
    if (token && !this.#session.token) this.#session.set(token);
    if (this.#session.token) this.#start();
    else if (this.#provider) void this.#session.renew().then(() => this.#start());
  }

  disconnectedCallback() {
    document.removeEventListener("keydown", this.#onKey);
    document.removeEventListener("pointerdown", this.#onOutside, true);
    window.removeEventListener("message", this.#onMessage);
  }

  attributeChangedCallback(name, old, value) {
    if (name !== "token" || !value || value === old || value === this.#session.token) return;
    this.#session.set(value);
    this.#start();
  }

  /** The person's language: the token's `locale` claim, else the browser's. */
  #speak() {
    const token = this.#session.token;
    this.#t = translator(wantedLocale(token ? claimOf(token, "locale") : null));
    for (const el of [this.#button, this.#popover, this.#live, this.#frame]) el?.setAttribute("lang", this.#t.locale);
    this.#popover.setAttribute("aria-label", this.#t("page.processTasks"));
    if (this.#frame) this.#frame.title = this.#t("page.processTasks");
    this.#render();
  }

  #start() {
    const token = this.#session.token;
    if (!token) return;
    this.#speak();
    if (this.#connection) return;
    const user = claimOf(token, "sub");
    if (!user) {
      console.error("taskbell-bell: the token names no person (no sub claim)");
      return;
    }
    this.#feed = new Feed(`user:${user}`);
    this.#feed.subscribe(({ source }) => {
      const before = this.#shown;
      this.#render();
      if (source === "live" && this.#shown > before) this.#live.textContent = badgeLabel(this.#shown, this.#t);
    });
    this.#connection = new Connection({ url: WS_URL, feed: this.#feed, session: this.#session });
    this.#connection.onState((state) => this.#onState(state));
    this.#session.onChange((fresh) => {
      this.#speak();
      this.#handOn(fresh);
    });
    this.#connection.start();
  }

  #onState(state) {
    this.dataset.state = state;
    if (state === ConnState.LIVE) {
      this.#refused = false;
      this.#render();
    } else if (state === ConnState.RECONNECTING && !this.#connection.everLive && !this.#refused) {
      // A socket refused at the handshake looks like any network loss to the page; say
      // what most likely happened once, for whoever integrates the bell.
      this.#refused = true;
      console.error(
        `taskbell-bell: could not connect to ${WS_URL} from ${window.location.origin}. If the server is up, ` +
          "this origin is probably not in its TASKBELL_ALLOWED_ORIGINS (the socket is refused with 403).",
      );
    } else if (state === ConnState.STOPPED) {
      console.error(`taskbell-bell: the server refused the token (${this.#connection.stopReason})`);
      this.#render();
    }
  }

  /** The badge exists only while something waits (as on the panel); the button's
   * accessible name carries the count too. */
  #render() {
    const n = this.#connection?.state === ConnState.STOPPED ? 0 : (this.count ?? 0);
    this.#shown = n;
    if (n > 0) {
      const label = badgeLabel(n, this.#t);
      if (!this.#badge) {
        this.#badge = document.createElement("span");
        this.#badge.className = "badge";
        this.#badge.dataset.testid = "badge";
        this.#badge.setAttribute("role", "img");
        this.#button.append(this.#badge);
      }
      this.#badge.textContent = n > 99 ? "99+" : String(n);
      this.#badge.setAttribute("aria-label", label);
      this.#button.setAttribute("aria-label", label);
      this.#button.title = label;
    } else {
      this.#badge?.remove();
      this.#badge = null;
      this.#button.setAttribute("aria-label", this.#t("page.processTasks"));
      this.#button.title = this.#t("page.processTasks");
    }
  }

  #hello() {
    this.#frame?.contentWindow?.postMessage({ type: "taskbell.bell" }, BASE.origin);
  }

  /** A fresh token reaches the open panel too (it re-authenticates its own socket). */
  #handOn(token) {
    this.#frame?.contentWindow?.postMessage({ type: "taskbell.token", token }, BASE.origin);
  }

  show() {
    if (this.open || !this.#session.token) return;
    if (!this.#frame) {
      this.#frame = document.createElement("iframe");
      this.#frame.title = this.#t("page.processTasks");
      this.#frame.lang = this.#t.locale;
      this.#frame.dataset.testid = "panel-frame";
      this.#frame.referrerPolicy = "no-referrer";
      // Tell the panel who frames it (each load): then its Escape asks this bell to close.
      this.#frame.addEventListener("load", () => this.#hello());
      this.#frame.src = `${BASE.origin}/#token=${encodeURIComponent(this.#session.token)}`;
      this.#popover.append(this.#frame);
    }
    this.#popover.hidden = false;
    this.#button.setAttribute("aria-expanded", "true");
    document.addEventListener("pointerdown", this.#onOutside, true);
    this.dispatchEvent(new Event("toggle"));
  }

  close({ focus = true } = {}) {
    if (!this.open) return;
    this.#popover.hidden = true;
    this.#button.setAttribute("aria-expanded", "false");
    document.removeEventListener("pointerdown", this.#onOutside, true);
    if (focus) this.#button.focus();
    this.dispatchEvent(new Event("toggle"));
  }

  focus(options) {
    this.#button.focus(options);
  }
}

if (!customElements.get("taskbell-bell")) customElements.define("taskbell-bell", TaskbellBell);
