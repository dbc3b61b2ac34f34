/**
 * The wire format, and the only module that knows it (see docs/protocol.md).
 *
 * Everything the server sends goes through a parse function here and comes out as a
 * plain frozen value with the page's own field names; anything unexpected throws
 * `WireError`, so no other module ever touches a raw frame or a raw JSON body.
 * Everything the page sends is built here too.
 */

export const Kind = Object.freeze({
  ACTIVITY: "activity",
  EMAIL: "email",
  EDIT_RECORD: "edit_record",
  PAGE: "page",
});

export const Status = Object.freeze({
  RUNNING: "running",
  POSTPONED: "postponed",
  COMPLETED: "completed",
  CANCELED: "canceled",
});

const KINDS = new Set(Object.values(Kind));
const STATUSES = new Set(Object.values(Status));

/** WebSocket close codes. The server's, and the one the page uses itself (a browser
 * may only close with 1000 or 3000-4999). */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  ABNORMAL: 1006,
  BAD_MESSAGE: 1008,
  TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  TRY_AGAIN_LATER: 1013,
  NOT_AUTHENTICATED: 4001,
  TOO_SLOW: 4008,
  CLIENT_RECONNECT: 4000,
});

export class WireError extends Error {
  constructor(message) {
    super(message);
    this.name = "WireError";
  }
}

// ---------------------------------------------------------------- small checkers

function object(value, what) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new WireError(`${what} is not an object`);
  }
  return value;
}

function string(value, what) {
  if (typeof value !== "string") throw new WireError(`${what} is not a string`);
  return value;
}

function optionalString(value, what) {
  return value === null || value === undefined ? null : string(value, what);
}

function seqNumber(value, what) {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new WireError(`${what} is not a non-negative integer`);
  }
  return value;
}

function instant(value, what) {
  const ms = Date.parse(string(value, what));
  if (Number.isNaN(ms)) throw new WireError(`${what} is not an ISO-8601 time`);
  return ms;
}

// ---------------------------------------------------------------- task objects

export const Priority = Object.freeze({ LOW: "low", NORMAL: "normal", HIGH: "high", URGENT: "urgent" });
const PRIORITIES = new Set(Object.values(Priority));
const COMMENT_RULES = new Set(["none", "optional", "required"]);

const optionalInstant = (value, what) => (value === null || value === undefined ? null : instant(value, what));

/** `actions` → `[{id, label, comment: "none" | "optional" | "required"}]` or null. */
function taskActions(value) {
  if (value === null || value === undefined) return null;
  if (!Array.isArray(value)) throw new WireError("task.actions is not a list");
  return Object.freeze(
    value.map((raw) => {
      const a = object(raw, "task.actions[]");
      const comment = optionalString(a.comment, "action.comment") ?? "none";
      return Object.freeze({
        id: string(a.id, "action.id"),
        label: string(a.label, "action.label"),
        comment: COMMENT_RULES.has(comment) ? comment : "optional",
      });
    }),
  );
}

/**
 * A task object → `{id, owner, role, actedBy, title, kind, status, process, record, url,
 * postponedUntil, createdAt, updatedAt, dueAt, priority, actions, overdue, outcome,
 * comment, completedBy, follows}` (times in epoch milliseconds).
 * An unknown `kind` is kept (the page shows a generic icon), an unknown priority reads as
 * `normal`; an unknown status is an error.
 */
export function parseTask(raw) {
  const t = object(raw, "task");
  const status = string(t.status, "task.status");
  if (!STATUSES.has(status)) throw new WireError(`unknown task status ${status.slice(0, 40)}`);
  let process = null;
  if (t.process !== null && t.process !== undefined) {
    const p = object(t.process, "task.process");
    process = Object.freeze({
      instanceId: string(p.instance_id, "process.instance_id"),
      name: string(p.name, "process.name"),
    });
  }
  let record = null;
  if (t.record !== null && t.record !== undefined) {
    const r = object(t.record, "task.record");
    record = Object.freeze({
      entity: string(r.entity, "record.entity"),
      id: string(r.id, "record.id"),
      title: optionalString(r.title, "record.title"),
    });
  }
  const kind = string(t.kind, "task.kind");
  return Object.freeze({
    id: string(t.id, "task.id"),
    // null while the task waits in a role's queue (`role` names it) for someone to claim.
    owner: optionalString(t.owner, "task.owner"),
    role: optionalString(t.role, "task.role"),
    actedBy: optionalString(t.acted_by, "task.acted_by"),
    title: string(t.title, "task.title"),
    kind: KINDS.has(kind) ? kind : "other",
    status,
    process,
    record,
    url: optionalString(t.url, "task.url"),
    postponedUntil:
      t.postponed_until === null || t.postponed_until === undefined
        ? null
        : instant(t.postponed_until, "task.postponed_until"),
    createdAt: instant(t.created_at, "task.created_at"),
    updatedAt: instant(t.updated_at, "task.updated_at"),
    dueAt: optionalInstant(t.due_at, "task.due_at"),
    priority: PRIORITIES.has(t.priority) ? t.priority : Priority.NORMAL,
    actions: taskActions(t.actions),
    overdue: t.overdue === true,
    outcome: optionalString(t.outcome, "task.outcome"),
    comment: optionalString(t.comment, "task.comment"),
    completedBy: optionalString(t.completed_by, "task.completed_by"),
    follows: optionalString(t.follows, "task.follows"),
  });
}

function taskArray(value, what) {
  if (!Array.isArray(value)) throw new WireError(`${what} is not a list`);
  return Object.freeze(value.map(parseTask));
}

// ---------------------------------------------------------------- WebSocket, server → page

const EVENT_CHANGES = Object.freeze({
  "task.added": "added",
  "task.updated": "updated",
  "task.removed": "removed",
});

/** A feed's wire name: `user:<id>` (a person's own tasks) or `role:<id>` (a queue). */
const FEED_NAME = /^(user|role):[^\s]{1,200}$/;

function feedName(value, what) {
  const name = string(value, what);
  if (!FEED_NAME.test(name)) throw new WireError(`${what} is not a feed name`);
  return name;
}

/** `counts.postponed` of a message or feed position (docs/protocol.md, "Live counts"), or
 * null when it carries no `counts` (a server, or an event kept from before, without them). */
function postponedOf(msg, what) {
  if (msg.counts === undefined || msg.counts === null) return null;
  const counts = object(msg.counts, `${what}.counts`);
  seqNumber(counts.running, `${what}.counts.running`);
  return seqNumber(counts.postponed, `${what}.counts.postponed`);
}

/** `{"<feed>": {seq, count, counts}}` (snapshot, synced, heartbeat): where each followed
 * feed stands; `postponed` is its `counts.postponed` (null when absent). */
function feedPositions(value, what) {
  const feeds = object(value, what);
  const out = {};
  for (const [name, pos] of Object.entries(feeds)) {
    const p = object(pos, `${what}.${name.slice(0, 40)}`);
    out[feedName(name, `${what} key`)] = Object.freeze({
      seq: seqNumber(p.seq, `${what}.seq`),
      count: seqNumber(p.count, `${what}.count`),
      postponed: postponedOf(p, what),
    });
  }
  return Object.freeze(out);
}

/** `{"<feed>": seq}`: how far the person has seen each feed ("new since you last looked"). */
function seenMarks(value, what) {
  const out = {};
  for (const [name, seq] of Object.entries(object(value, what))) {
    out[feedName(name, `${what} key`)] = seqNumber(seq, `${what}.seq`);
  }
  return Object.freeze(out);
}

const optionalFeeds = (value, what) => (value === undefined || value === null ? null : feedPositions(value, what));

/** Which followed feed a task of a snapshot belongs to: an unclaimed queue task to its
 * role's feed, any other to its owner's (docs/protocol.md, "Several feeds"). */
export function feedOfTask(task) {
  if (task.owner === null && task.role) return `role:${task.role}`;
  return task.owner === null ? null : `user:${task.owner}`;
}

/**
 * One frame from `/ws` → one of
 *   {type: "snapshot", seq, count, postponed, feeds: {"<feed>": {seq, count, postponed}} | null, tasks}
 *   {type: "synced", seq, count, postponed, feeds | null}
 *   {type: "event", feed: "<feed>" | null, change: "added"|"updated"|"removed", seq, count, postponed, task, reason}
 *   {type: "feed.joined", feed, seq, count, postponed, tasks} | {type: "feed.left", feed}
 * (`postponed`: the message's `counts.postponed`, null from a server without `counts`.)
 *   {type: "ping", feeds | null} | {type: "pong"}
 *   {type: "seen", feeds: {"<feed>": seq}} (the person marked feeds seen, on any tab)
 * (`feeds` and an event's `feed` are null from a server that predates several feeds: then
 * everything is the person's own feed.)
 *   {type: "error", code, message}
 * Throws `WireError` for anything else, including an unknown message type.
 */
export function parseServerMessage(text) {
  if (typeof text !== "string") throw new WireError("binary frames are not part of the protocol");
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    throw new WireError("frame is not JSON");
  }
  const msg = object(data, "message");
  const type = string(msg.type, "message.type");
  switch (type) {
    case "snapshot":
      return Object.freeze({
        type,
        seq: seqNumber(msg.seq, "snapshot.seq"),
        count: seqNumber(msg.count, "snapshot.count"),
        postponed: postponedOf(msg, "snapshot"),
        feeds: optionalFeeds(msg.feeds, "snapshot.feeds"),
        tasks: taskArray(msg.tasks, "snapshot.tasks"),
      });
    case "synced":
      return Object.freeze({
        type,
        seq: seqNumber(msg.seq, "synced.seq"),
        count: seqNumber(msg.count, "synced.count"),
        postponed: postponedOf(msg, "synced"),
        feeds: optionalFeeds(msg.feeds, "synced.feeds"),
      });
    case "task.added":
    case "task.updated":
    case "task.removed":
      return Object.freeze({
        type: "event",
        feed: msg.feed === undefined || msg.feed === null ? null : feedName(msg.feed, `${type}.feed`),
        change: EVENT_CHANGES[type],
        seq: seqNumber(msg.seq, `${type}.seq`),
        count: seqNumber(msg.count, `${type}.count`),
        postponed: postponedOf(msg, type),
        task: parseTask(msg.task),
        reason: optionalString(msg.reason, `${type}.reason`),
      });
    case "feed.joined":
      return Object.freeze({
        type,
        feed: feedName(msg.feed, "feed.joined.feed"),
        seq: seqNumber(msg.seq, "feed.joined.seq"),
        count: seqNumber(msg.count, "feed.joined.count"),
        postponed: postponedOf(msg, "feed.joined"),
        tasks: taskArray(msg.tasks, "feed.joined.tasks"),
      });
    case "feed.left":
      return Object.freeze({ type, feed: feedName(msg.feed, "feed.left.feed") });
    case "ping":
      return Object.freeze({ type, feeds: optionalFeeds(msg.feeds, "ping.feeds") });
    case "pong":
      return Object.freeze({ type });
    case "seen":
      return Object.freeze({ type, feeds: seenMarks(msg.feeds, "seen.feeds") });
    case "error":
      return Object.freeze({
        type,
        code: optionalString(msg.code, "error.code") ?? "error",
        message: optionalString(msg.message, "error.message") ?? "",
      });
    default:
      throw new WireError(`unknown message type ${type.slice(0, 40)}`);
  }
}

// ---------------------------------------------------------------- WebSocket, page → server

/** The first frame of a connection (and a session refresh when sent again): `since` for
 * the own feed, `sinceFeeds` `{"<feed>": seq}` for the others followed. */
export function encodeAuth(token, since, sinceFeeds = null) {
  const msg = { type: "auth", token };
  if (Number.isSafeInteger(since)) msg.since = since;
  if (sinceFeeds && Object.keys(sinceFeeds).length) msg.since_feeds = sinceFeeds;
  return JSON.stringify(msg);
}

export const encodePing = () => '{"type":"ping"}';
export const encodePong = () => '{"type":"pong"}';

// ---------------------------------------------------------------- HTTP bodies

/** `GET /me/tasks` → `{tasks, nextCursor}`. */
export function parseTaskPage(json) {
  const body = object(json, "task page");
  return Object.freeze({
    tasks: taskArray(body.tasks, "tasks"),
    nextCursor: optionalString(body.next_cursor, "next_cursor"),
  });
}

/** `GET /me/seen` → `{feeds: {"<feed>": seq}, new: [{feed, taskId, seq}]}`. */
export function parseSeen(json) {
  const body = object(json, "seen");
  const news = Array.isArray(body.new) ? body.new : [];
  return Object.freeze({
    feeds: seenMarks(body.feeds, "feeds"),
    new: Object.freeze(
      news.map((n, i) => {
        const item = object(n, `new[${i}]`);
        return Object.freeze({
          feed: feedName(item.feed, "new.feed"),
          taskId: string(item.task_id, "new.task_id"),
          seq: seqNumber(item.seq, "new.seq"),
        });
      }),
    ),
  });
}

/** `PUT /me/seen` answer → `{feeds: {"<feed>": seq}, ignored: [...]}`. */
export function parseMarked(json) {
  const body = object(json, "marked");
  const ignored = Array.isArray(body.ignored) ? body.ignored.filter((f) => typeof f === "string") : [];
  return Object.freeze({ feeds: seenMarks(body.feeds, "feeds"), ignored: Object.freeze(ignored) });
}

/** `GET /me/counts` → `{running, postponed, completed, canceled}` (numbers). */
export function parseStatusCounts(json) {
  const body = object(json, "counts");
  const out = {};
  for (const status of STATUSES) out[status] = seqNumber(body[status] ?? 0, `counts.${status}`);
  return Object.freeze(out);
}

/** `PUT /me/seen` body. */
export const encodeSeen = (feeds) => JSON.stringify({ feeds });

/** `GET /records/{entity}/{id}/tasks` → `{entity, id, tasks}`. */
export function parseRecordTasks(json) {
  const body = object(json, "record tasks");
  return Object.freeze({
    entity: string(body.entity, "entity"),
    id: string(body.id, "id"),
    tasks: taskArray(body.tasks, "tasks"),
  });
}

/** A transition's answer (`POST /tasks/{id}/complete` …) is the task itself. */
export const parseTaskResponse = parseTask;

/** `{"error": {"code", "message"}}` → `{code, message}`; tolerant, it only feeds a toast. */
export function parseError(json, status) {
  const err = json && typeof json === "object" ? json.error : null;
  if (err && typeof err === "object" && typeof err.message === "string") {
    return { code: typeof err.code === "string" ? err.code : `http_${status}`, message: err.message };
  }
  return { code: `http_${status}`, message: `The server answered ${status}.` };
}

/** `POST /tasks/{id}/complete` body: the decision taken (an action id) and its comment,
 * or nothing for a task without actions. */
export function encodeComplete(outcome = null, comment = null) {
  if (outcome === null) return undefined;
  const body = { outcome };
  if (comment !== null && comment.trim() !== "") body.comment = comment;
  return JSON.stringify(body);
}

/** `POST /tasks/{id}/claim` (no body: the token says who claims). */
export const parseClaimResponse = parseTask;

/** `POST /tasks/{id}/postpone` body. */
export function encodePostpone(untilMs) {
  return JSON.stringify({ until: new Date(untilMs).toISOString() });
}

/** `GET /api/v1/demo` → `{demo, users}`. */
export function parseDemoInfo(json) {
  const body = object(json, "demo info");
  const users = Array.isArray(body.users) ? body.users.filter((u) => typeof u === "string") : [];
  return Object.freeze({ demo: body.demo === true, engine: body.engine === true, users: Object.freeze(users) });
}

/** `POST /api/v1/demo/token` → `{user, token}`. */
export function parseDemoToken(json) {
  const body = object(json, "demo token");
  return Object.freeze({ user: string(body.user, "user"), token: string(body.token, "token") });
}

export const encodeDemoUser = (user) => JSON.stringify({ user });

/** `POST /api/v1/demo/process` → `{instanceId, taskIds}`. */
export function parseDemoProcess(json) {
  const body = object(json, "demo process");
  return Object.freeze({
    instanceId: string(body.instance_id, "instance_id"),
    taskIds: Array.isArray(body.tasks) ? Object.freeze(body.tasks.map(String)) : Object.freeze([]),
  });
}

/** `GET/PUT /api/v1/me/preferences` → `{channels: {desktop, push}, mutedProcesses,
 * quietHours: {start, end, tz} | null}` (docs/protocol.md, "Notification preferences"). */
export function parsePreferences(json) {
  const body = object(json, "preferences");
  const channels = object(body.channels, "channels");
  const bool = (value, what) => {
    if (typeof value !== "boolean") throw new WireError(`${what} must be true or false`);
    return value;
  };
  if (!Array.isArray(body.muted_processes)) throw new WireError("muted_processes must be a list");
  let quietHours = null;
  if (body.quiet_hours !== null && body.quiet_hours !== undefined) {
    const q = object(body.quiet_hours, "quiet_hours");
    quietHours = Object.freeze({
      start: string(q.start, "quiet_hours.start"),
      end: string(q.end, "quiet_hours.end"),
      tz: string(q.tz, "quiet_hours.tz"),
    });
  }
  return Object.freeze({
    channels: Object.freeze({
      desktop: bool(channels.desktop, "channels.desktop"),
      push: bool(channels.push, "channels.push"),
    }),
    mutedProcesses: Object.freeze(body.muted_processes.map((m) => string(m, "muted_processes[]"))),
    quietHours,
  });
}

/** The `PUT /api/v1/me/preferences` body for what `parsePreferences` gives. */
export function encodePreferences({ channels, mutedProcesses, quietHours }) {
  return JSON.stringify({
    channels: { desktop: channels.desktop, push: channels.push },
    muted_processes: [...mutedProcesses],
    quiet_hours: quietHours ? { start: quietHours.start, end: quietHours.end, tz: quietHours.tz } : null,
  });
}
