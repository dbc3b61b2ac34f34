/**
 * The HTTP side of the server (under /api/v1): one method per call the page makes.
 * Bodies are decoded by wire.js; failures throw `ApiError` with the server's code and
 * message. A 401 in demo mode re-mints the token once and retries.
 */

import { t } from "./i18n.js";
import * as wire from "./wire.js";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

const enc = encodeURIComponent;

export class Api {
  /** `session` is set after construction (the session needs the api for demo tokens). */
  constructor(base = "/api/v1") {
    this.base = base;
    this.session = null;
  }

  async #request(method, path, { body, auth = true, retry = true, keepalive = false } = {}) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (auth && this.session?.token) headers.Authorization = `Bearer ${this.session.token}`;
    let response;
    try {
      response = await fetch(this.base + path, { method, headers, body, cache: "no-store", keepalive });
    } catch {
      throw new ApiError(0, "unreachable", t("api.unreachable"));
    }
    if (response.status === 401 && auth && retry && (await this.session?.renew())) {
      return this.#request(method, path, { body, auth, retry: false, keepalive });
    }
    let json = null;
    try {
      json = await response.json();
    } catch {
      json = null;
    }
    if (!response.ok) {
      const { code, message } = wire.parseError(json, response.status);
      throw new ApiError(response.status, code, message);
    }
    return json;
  }

  /** The raw JSON of a call, for the modules of other parts of the API (processes-api.js). */
  request(method, path, options = {}) {
    return this.#request(method, path, options);
  }

  async myTasks({ statuses = ["running"], limit = 50, cursor = null } = {}) {
    const q = new URLSearchParams({ status: statuses.join(","), limit: String(limit) });
    if (cursor) q.set("cursor", cursor);
    return wire.parseTaskPage(await this.#request("GET", `/me/tasks?${q}`));
  }

  /** The activities list: `q` searches, `sort` is "newest", "due" or "priority". */
  async activities({ statuses, q = "", sort = "newest", limit = 50, cursor = null } = {}) {
    const params = new URLSearchParams({ status: statuses.join(","), limit: String(limit), sort });
    if (q.trim()) params.set("q", q.trim());
    if (cursor) params.set("cursor", cursor);
    return wire.parseTaskPage(await this.#request("GET", `/me/tasks?${params}`));
  }

  /** Totals per status of the tasks `q` finds: the activities filters' counts. */
  async statusCounts(q = "") {
    const params = q.trim() ? `?${new URLSearchParams({ q: q.trim() })}` : "";
    return wire.parseStatusCounts(await this.#request("GET", `/me/counts${params}`));
  }

  /** Where a final task leads (its record's default page): a link a browser follows, so
   * it carries the token (the call takes it for exactly this). */
  openHref(id) {
    return `${this.base}/tasks/${enc(id)}/open?token=${enc(this.session?.token ?? "")}`;
  }

  async seen() {
    return wire.parseSeen(await this.#request("GET", "/me/seen"));
  }

  async markSeen(feeds) {
    return wire.parseMarked(await this.#request("PUT", "/me/seen", { body: wire.encodeSeen(feeds) }));
  }

  async recordTasks(entity, id) {
    return wire.parseRecordTasks(await this.#request("GET", `/records/${enc(entity)}/${enc(id)}/tasks`));
  }

  /** Complete a task; for a task with actions, `outcome` names the one taken (and
   * `comment` goes with it). 422 `outcome_required` / `unknown_outcome` /
   * `comment_required` when the decision does not fit the task. */
  async complete(id, { outcome = null, comment = null } = {}) {
    const body = wire.encodeComplete(outcome, comment);
    return wire.parseTaskResponse(await this.#request("POST", `/tasks/${enc(id)}/complete`, { body, keepalive: true }));
  }

  /** Take a task of one of the person's role queues; 409 `already_claimed` when someone
   * else was first. */
  async claim(id) {
    return wire.parseClaimResponse(await this.#request("POST", `/tasks/${enc(id)}/claim`, { body: "{}" }));
  }

  async resume(id) {
    return wire.parseTaskResponse(await this.#request("POST", `/tasks/${enc(id)}/resume`));
  }

  async postpone(id, untilMs) {
    return wire.parseTaskResponse(
      await this.#request("POST", `/tasks/${enc(id)}/postpone`, { body: wire.encodePostpone(untilMs) }),
    );
  }

  /** The person's notification preferences (the defaults until they save any). */
  async preferences() {
    return wire.parsePreferences(await this.#request("GET", "/me/preferences"));
  }

  /** Replace them; 422 `bad_time` / `bad_time_zone` / `invalid` for what the server refuses. */
  async savePreferences(prefs) {
    const body = wire.encodePreferences(prefs);
    return wire.parsePreferences(await this.#request("PUT", "/me/preferences", { body }));
  }

  async demoInfo() {
    try {
      return wire.parseDemoInfo(await this.#request("GET", "/demo", { auth: false }));
    } catch {
      return wire.parseDemoInfo({ demo: false, users: [] });
    }
  }

  async demoToken(user) {
    return wire.parseDemoToken(
      await this.#request("POST", "/demo/token", { body: wire.encodeDemoUser(user), auth: false }),
    );
  }

  async startDemoProcess() {
    return wire.parseDemoProcess(await this.#request("POST", "/demo/process", { body: "{}", auth: false }));
  }
}
