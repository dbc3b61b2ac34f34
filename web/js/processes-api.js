/**
 * The process view's side of the HTTP API: instances, their steps, definitions and
 * statistics (docs/protocol.md, "Process administration"), for a person whose token
 * carries the `process-admin` role. One method per call; every answer is checked and
 * turned into plain frozen values here, so this module is the only one that knows these
 * bodies (as wire.js is for tasks and the socket). Failures throw `ApiError` (api.js).
 */

import { WireError } from "./wire.js";

export const InstanceStatus = Object.freeze({
  RUNNING: "running",
  COMPLETED: "completed",
  CANCELED: "canceled",
  ERROR: "error",
});
const INSTANCE_STATUSES = Object.values(InstanceStatus);

/** What one page of instances asks for (the server allows 1 to 200). */
export const PAGE = 25;

const enc = encodeURIComponent;

function object(value, what) {
  if (value === null || typeof value !== "object" || Array.isArray(value))
    throw new WireError(`${what} is not an object`);
  return value;
}

function list(value, what) {
  if (!Array.isArray(value)) throw new WireError(`${what} is not a list`);
  return value;
}

function string(value, what) {
  if (typeof value !== "string") throw new WireError(`${what} is not a string`);
  return value;
}

const optionalString = (value, what) => (value === null || value === undefined ? null : string(value, what));

function count(value, what) {
  if (!Number.isSafeInteger(value) || value < 0) throw new WireError(`${what} is not a whole number`);
  return value;
}

const optionalCount = (value, what) => (value === null || value === undefined ? null : count(value, what));

function optionalInstant(value, what) {
  if (value === null || value === undefined) return null;
  const ms = Date.parse(string(value, what));
  if (Number.isNaN(ms)) throw new WireError(`${what} is not an ISO-8601 time`);
  return ms;
}

function status(value, what) {
  const s = string(value, what);
  if (!INSTANCE_STATUSES.includes(s)) throw new WireError(`${what} is not an instance status`);
  return s;
}

/** An instance → `{id, name, status, expectMore, startedAt, endedAt, durationMs}` (ms). */
function instance(raw) {
  const i = object(raw, "instance");
  return {
    id: string(i.id, "instance.id"),
    name: string(i.name, "instance.name"),
    status: status(i.status, "instance.status"),
    expectMore: i.expect_more === true,
    startedAt: optionalInstant(i.started_at, "instance.started_at"),
    endedAt: optionalInstant(i.ended_at, "instance.ended_at"),
    durationMs: optionalCount(i.duration_ms, "instance.duration_ms"),
  };
}

/** A row of the list: the instance, its steps counted, who holds its open steps. */
function instanceRow(raw) {
  const counts = object(raw.step_counts, "instance.step_counts");
  return Object.freeze({
    ...instance(raw),
    steps: Object.freeze({ total: count(counts.total, "steps.total"), open: count(counts.open, "steps.open") }),
    openOwners: Object.freeze(list(raw.open_owners, "open_owners").map((o) => string(o, "open_owners[]"))),
    openRoles: Object.freeze(list(raw.open_roles, "open_roles").map((r) => string(r, "open_roles[]"))),
  });
}

/** A step → `{id, owner, role, title, kind, status, createdAt, endedAt, durationMs,
 * completedBy, outcome}`. A task status the page does not know is shown as it is. */
function step(raw) {
  const s = object(raw, "step");
  return Object.freeze({
    id: string(s.id, "step.id"),
    owner: optionalString(s.owner, "step.owner"),
    role: optionalString(s.role, "step.role"),
    title: string(s.title, "step.title"),
    kind: string(s.kind, "step.kind"),
    status: string(s.status, "step.status"),
    createdAt: optionalInstant(s.created_at, "step.created_at"),
    endedAt: optionalInstant(s.ended_at, "step.ended_at"),
    durationMs: optionalCount(s.duration_ms, "step.duration_ms"),
    completedBy: optionalString(s.completed_by, "step.completed_by"),
    outcome: optionalString(s.outcome, "step.outcome"),
  });
}

/** `{running, completed, canceled, error}`, every status present (0 when missing). */
function statusCounts(raw, what) {
  const c = object(raw, what);
  return Object.freeze(Object.fromEntries(INSTANCE_STATUSES.map((s) => [s, optionalCount(c[s], `${what}.${s}`) ?? 0])));
}

function durations(raw, what) {
  const d = object(raw, what);
  return Object.freeze({
    completed: count(d.completed, `${what}.completed`),
    mean: optionalCount(d.mean, `${what}.mean`),
    p50: optionalCount(d.p50, `${what}.p50`),
    p95: optionalCount(d.p95, `${what}.p95`),
    max: optionalCount(d.max, `${what}.max`),
  });
}

export class ProcessApi {
  /** `api`: the page's Api (its token, its demo renewal, its errors). */
  constructor(api) {
    this.api = api;
  }

  /** `GET /processes`: `{instances, nextCursor}`, newest start first. */
  async instances({ statuses = [], definition = null, since = null, limit = PAGE, cursor = null } = {}) {
    const q = new URLSearchParams({ limit: String(limit) });
    if (statuses.length) q.set("status", statuses.join(","));
    if (definition) q.set("definition", definition);
    if (since !== null) q.set("from", new Date(since).toISOString());
    if (cursor) q.set("cursor", cursor);
    const body = object(await this.api.request("GET", `/processes?${q}`), "instance page");
    return Object.freeze({
      instances: Object.freeze(list(body.instances, "instances").map(instanceRow)),
      nextCursor: optionalString(body.next_cursor, "next_cursor"),
    });
  }

  /** `GET /processes/{id}`: the instance and its steps in creation order. */
  async instance(id) {
    const body = object(await this.api.request("GET", `/processes/${enc(id)}`), "instance");
    return Object.freeze({ ...instance(body), steps: Object.freeze(list(body.steps, "steps").map(step)) });
  }

  /** `POST /processes/{id}/cancel`: `{status, canceledSteps}`. */
  async cancel(id) {
    const body = object(await this.api.request("POST", `/processes/${enc(id)}/cancel`, { body: "{}" }), "ended");
    return Object.freeze({ ...instance(body), canceledSteps: count(body.canceled_steps, "canceled_steps") });
  }

  /** `GET /process-definitions`: `[{name, disabled}]` by name. */
  async definitions() {
    const body = object(await this.api.request("GET", "/process-definitions"), "definitions");
    return Object.freeze(
      list(body.processes, "processes").map((raw) => {
        const d = object(raw, "definition");
        return Object.freeze({ name: string(d.name, "definition.name"), disabled: d.disabled === true });
      }),
    );
  }

  /** `POST /process-definitions/{name}/disable` or `/enable`. */
  async setDisabled(name, disabled) {
    const verb = disabled ? "disable" : "enable";
    const body = object(await this.api.request("POST", `/process-definitions/${enc(name)}/${verb}`), "switch");
    return Object.freeze({ name: string(body.name, "name"), disabled: body.disabled === true });
  }

  /** `GET /processes/stats?from=`: `{overall: {counts, durations}, processes: [{name, counts,
   * durations}]}`; durations are of completed instances only. */
  async stats({ since = null } = {}) {
    const q = new URLSearchParams();
    if (since !== null) q.set("from", new Date(since).toISOString());
    const body = object(await this.api.request("GET", `/processes/stats?${q}`), "stats");
    const overall = object(body.overall, "overall");
    return Object.freeze({
      overall: Object.freeze({
        counts: statusCounts(overall.counts, "overall.counts"),
        durations: durations(overall.duration_ms, "overall.duration_ms"),
      }),
      processes: Object.freeze(
        list(body.processes, "processes").map((raw) =>
          Object.freeze({
            name: string(raw.name, "process.name"),
            counts: statusCounts(raw.counts, "process.counts"),
            durations: durations(raw.duration_ms, "process.duration_ms"),
          }),
        ),
      ),
    });
  }
}
