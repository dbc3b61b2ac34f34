/**
 * Who the person is: the user token of this tab.
 *
 * A host application opens the panel at `/#token=...`; the token is taken from the
 * fragment (which never reaches the server in a URL), kept in sessionStorage for this
 * tab, and removed from the address bar. A host may also hand over a fresh token later
 * with `postMessage({type: "taskbell.token", token})` from the window that opened or
 * embeds the panel. In demo mode the page mints tokens itself through the demo API.
 */

const TOKEN_KEY = "taskbell.token";
const LAST_DEMO_USER_KEY = "taskbell.demo.lastUser";

/** Take `#token=...` out of the address bar; returns the token or null. Call first. */
export function takeTokenFromFragment() {
  const hash = window.location.hash.replace(/^#/, "");
  const params = new URLSearchParams(hash.startsWith("/") ? "" : hash);
  const token = params.get("token");
  if (!token) return null;
  const route = params.get("route");
  const clean = `${window.location.pathname}${window.location.search}#${route?.startsWith("/") ? route : "/"}`;
  window.history.replaceState(null, "", clean);
  return token;
}

/** The `sub`, `exp`, `locale` and `roles` claims, for display only (the server is the one
 * that checks the token): who is shown, when to renew, which language to speak, whether
 * to offer the process view. */
function subjectOf(token) {
  try {
    const part = token.split(".")[1] ?? "";
    const json = atob(part.replace(/-/g, "+").replace(/_/g, "/"));
    const claims = JSON.parse(json);
    return {
      user: typeof claims.sub === "string" ? claims.sub : null,
      expiresAt: typeof claims.exp === "number" ? claims.exp * 1000 : null,
      locale: typeof claims.locale === "string" ? claims.locale : null,
      roles: Array.isArray(claims.roles) ? claims.roles.filter((r) => typeof r === "string") : [],
    };
  } catch {
    return { user: null, expiresAt: null, locale: null, roles: [] };
  }
}

export class Session {
  #token = null;
  #listeners = new Set();
  #refreshTimer = 0;

  constructor({ demo, api }) {
    this.demo = demo;
    this.api = api;
    this.user = null;
    this.expiresAt = null;
    /** The token's `locale` claim ("de", "fr-CA"), or null. */
    this.locale = null;
    /** The token's `roles` claim: rights such as `process-admin`. */
    this.roles = [];
  }

  /** Whether to offer the process view (the server decides what the token may do). */
  get isProcessAdmin() {
    return this.roles.includes("process-admin");
  }

  get token() {
    return this.#token;
  }

  /** Read the token given in the fragment or kept for this tab. */
  restore(fromFragment) {
    let token = fromFragment;
    if (!token) {
      try {
        token = window.sessionStorage.getItem(TOKEN_KEY);
      } catch {
        token = null;
      }
    }
    if (token) this.set(token);
    return Boolean(token);
  }

  set(token) {
    this.#token = token;
    const { user, expiresAt, locale, roles } = subjectOf(token);
    this.user = user;
    this.expiresAt = expiresAt;
    this.locale = locale;
    this.roles = roles;
    try {
      window.sessionStorage.setItem(TOKEN_KEY, token);
    } catch {
      /* private mode: the token lives as long as the page */
    }
    this.#scheduleRefresh();
    for (const fn of this.#listeners) fn(token);
  }

  /** `fn(token)` whenever the token changes (the connection extends its session). */
  onChange(fn) {
    this.#listeners.add(fn);
  }

  /** Demo mode: sign in as `user` without handling a token by hand. */
  async signInDemo(user) {
    const { token } = await this.api.demoToken(user);
    try {
      window.localStorage.setItem(LAST_DEMO_USER_KEY, user);
    } catch {
      /* ignore */
    }
    this.set(token);
  }

  static lastDemoUser() {
    try {
      return window.localStorage.getItem(LAST_DEMO_USER_KEY);
    } catch {
      return null;
    }
  }

  /** A new token after the server refused this one (4001 / 401). Only demo mode can
   * mint one; elsewhere the host application must hand one over. Returns success. */
  async renew() {
    if (!this.demo || !this.user) return false;
    try {
      await this.signInDemo(this.user);
      return true;
    } catch {
      return false;
    }
  }

  signOut() {
    try {
      window.sessionStorage.removeItem(TOKEN_KEY);
    } catch {
      /* ignore */
    }
    this.#token = null;
  }

  /** Accept a fresh token from the host application that opened or embeds the panel. */
  listenToHost() {
    window.addEventListener("message", (event) => {
      const fromHost =
        event.source !== null &&
        (event.source === window.opener || event.source === window.parent) &&
        event.source !== window;
      const data = event.data;
      if (fromHost && data && data.type === "taskbell.token" && typeof data.token === "string") {
        this.set(data.token);
      }
    });
  }

  #scheduleRefresh() {
    window.clearTimeout(this.#refreshTimer);
    if (!this.demo || this.expiresAt === null) return;
    // Demo tokens are re-minted a minute before they expire, so a demo left open overnight
    // keeps working without a 4001 round trip.
    const delay = Math.max(5_000, this.expiresAt - Date.now() - 60_000);
    if (delay > 2 ** 31 - 1) return;
    this.#refreshTimer = window.setTimeout(() => void this.renew(), delay);
  }
}
