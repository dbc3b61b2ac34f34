/**
 * What the person is shown, as the server last described it: one or more **feeds** (their
 * own `user:<id>`, each role queue `role:<r>` they are in, and `user:<other>` for each
 * person they stand in for), each with its running tasks, the highest seq applied and the
 * server's count for that seq (docs/protocol.md, "Several feeds").
 *
 * Counts are never computed here: a feed's count is always the `count` that travelled with
 * its last applied seq, and the badge is their sum; likewise its `postponed` is the
 * `counts.postponed` that travelled with it (null until a message carried one). An event
 * that removes a task the feed does not hold moves only the counts (a task created
 * already postponed, a postponed one ended or moved: docs/protocol.md, "Live counts"): it
 * is applied (seq and counts) and reported with no changes. Events are applied per feed strictly
 * in seq order; an older or repeated seq is ignored, a seq that skips ahead (or an event
 * of a feed not followed) is reported as a gap, and the connection then resumes with
 * `since` / `since_feeds`. A message without `feed` (a server that predates several
 * feeds) is the own feed's. Listeners get one notification per applied message, with what
 * changed.
 */

import { feedOfTask } from "./wire.js";

const PRIORITY_RANK = Object.freeze({ urgent: 0, high: 1, normal: 2, low: 3 });

/** Panel order, by what needs attention: overdue first, then priority (urgent, high,
 * normal, low), then the soonest due (a task with a due time before one without), then
 * newest, then by id. Tasks with none of these fields keep the server's newest-first. */
export function compareTasks(a, b) {
  if (a.overdue !== b.overdue) return a.overdue ? -1 : 1;
  const pa = PRIORITY_RANK[a.priority] ?? 2;
  const pb = PRIORITY_RANK[b.priority] ?? 2;
  if (pa !== pb) return pa - pb;
  if (a.dueAt !== b.dueAt) {
    if (a.dueAt === null || a.dueAt === undefined) return 1;
    if (b.dueAt === null || b.dueAt === undefined) return -1;
    return a.dueAt - b.dueAt;
  }
  if (a.createdAt !== b.createdAt) return b.createdAt - a.createdAt;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export const Applied = Object.freeze({ APPLIED: "applied", STALE: "stale", GAP: "gap" });

/** Own feed first, then the role queues, then the people stood in for, each by name. */
function compareNames(own) {
  const rank = (name) => (name === own ? 0 : name.startsWith("role:") ? 1 : 2);
  return (a, b) => rank(a) - rank(b) || (a < b ? -1 : a > b ? 1 : 0);
}

export class Feed {
  /** name → {seq: number|null, count, postponed: number|null, tasks: Map<id, task>} */
  #feeds = new Map();
  #listeners = new Set();

  /** `own`: the person's own feed, `user:<id>`. */
  constructor(own) {
    this.own = own;
    this.#feeds.set(own, { seq: null, count: 0, postponed: null, tasks: new Map() });
  }

  /** The own feed's seq (null until the first snapshot). */
  get seq() {
    return this.#feeds.get(this.own).seq;
  }

  /** What waits for the person: the sum of every followed feed's count (the badge). */
  get count() {
    let n = 0;
    for (const f of this.#feeds.values()) n += f.count;
    return n;
  }

  get known() {
    return this.seq !== null;
  }

  /** The feeds followed, own first, then queues, then people stood in for. */
  names() {
    return [...this.#feeds.keys()].sort(compareNames(this.own));
  }

  countOf(name) {
    return this.#feeds.get(name)?.count ?? 0;
  }

  /** The server's postponed count of one feed (default: the own one); null when unknown. */
  postponedOf(name = this.own) {
    return this.#feeds.get(name)?.postponed ?? null;
  }

  /** A running task by id (the own feed's copy first). */
  get(id) {
    for (const name of this.names()) {
      const task = this.#feeds.get(name).tasks.get(id);
      if (task) return task;
    }
    return null;
  }

  /** Running tasks of one feed (default: the own one) in panel order. */
  list(name = this.own) {
    const f = this.#feeds.get(name);
    return f ? [...f.tasks.values()].sort(compareTasks) : [];
  }

  /** Running tasks of every feed, each once, in panel order. */
  all() {
    const byId = new Map();
    for (const name of this.names()) for (const t of this.#feeds.get(name).tasks.values()) byId.set(t.id, t);
    return [...byId.values()].sort(compareTasks);
  }

  /** `{"<feed>": seq}` of the other feeds, for `since_feeds` when resuming. */
  sinceFeeds() {
    const out = {};
    for (const [name, f] of this.#feeds) if (name !== this.own && f.seq !== null) out[name] = f.seq;
    return out;
  }

  /** `fn({source, changes: [{change, task, reason, feed}]})`; returns an unsubscribe
   * function. `source` is "snapshot", "replay" (catching up after a reconnect) or "live". */
  subscribe(fn) {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Replace everything with a snapshot; reports the difference to what was shown. */
  reset({ seq, count, postponed = null, feeds, tasks }) {
    const positions = feeds ?? { [this.own]: { seq, count, postponed } };
    const next = new Map();
    for (const [name, pos] of Object.entries(positions)) {
      next.set(name, { seq: pos.seq, count: pos.count, postponed: pos.postponed ?? null, tasks: new Map() });
    }
    if (!next.has(this.own)) next.set(this.own, { seq, count, postponed, tasks: new Map() });
    for (const task of tasks) {
      const name = feeds ? feedOfTask(task) : this.own;
      (next.get(name) ?? next.get(this.own)).tasks.set(task.id, task);
    }
    const before = this.#feeds;
    this.#feeds = next;
    const changes = [];
    for (const [name, f] of before) {
      for (const [id, task] of f.tasks) {
        if (!next.get(name)?.tasks.has(id)) changes.push({ change: "removed", task, reason: null, feed: name });
      }
    }
    for (const [name, f] of next) {
      for (const [id, task] of f.tasks) {
        const old = before.get(name)?.tasks.get(id);
        if (!old) changes.push({ change: "added", task, reason: null, feed: name });
        else if (old.updatedAt !== task.updatedAt) changes.push({ change: "updated", task, reason: null, feed: name });
      }
    }
    this.#emit("snapshot", changes);
  }

  /** Apply one `task.*` event. Returns Applied.APPLIED, STALE (ignored) or GAP. */
  apply(event, source = "live") {
    const name = event.feed ?? this.own;
    const f = this.#feeds.get(name);
    if (!f || f.seq === null || event.seq > f.seq + 1) return Applied.GAP;
    if (event.seq <= f.seq) return Applied.STALE;
    const { task } = event;
    const held = f.tasks.has(task.id);
    if (event.change === "removed") f.tasks.delete(task.id);
    else f.tasks.set(task.id, task);
    f.seq = event.seq;
    f.count = event.count;
    if (event.postponed !== null && event.postponed !== undefined) f.postponed = event.postponed;
    const countsOnly = event.change === "removed" && !held;
    this.#emit(source, countsOnly ? [] : [{ change: event.change, task, reason: event.reason, feed: name }]);
    return Applied.APPLIED;
  }

  /** The end of a replay. Any feed not at the seq it names means the replay missed
   * something; a feed it no longer names was left while away. */
  synced({ seq, count, postponed = null, feeds }) {
    const positions = feeds ?? { [this.own]: { seq, count, postponed } };
    for (const [name, pos] of Object.entries(positions)) {
      if (this.#feeds.get(name)?.seq !== pos.seq) return Applied.GAP;
    }
    const changes = [];
    for (const [name, f] of [...this.#feeds]) {
      const pos = positions[name];
      if (pos) {
        f.count = pos.count;
        if (pos.postponed !== null && pos.postponed !== undefined) f.postponed = pos.postponed;
      } else if (feeds && name !== this.own) {
        this.#feeds.delete(name);
        for (const task of f.tasks.values()) changes.push({ change: "removed", task, reason: "left", feed: name });
      }
    }
    this.#emit("replay", changes);
    return Applied.APPLIED;
  }

  /** `feed.joined`: the person now follows `feed` (joined a role, a substitution began). */
  joined({ feed, seq, count, postponed = null, tasks }) {
    const before = this.#feeds.get(feed)?.tasks ?? new Map();
    const now = new Map(tasks.map((t) => [t.id, t]));
    this.#feeds.set(feed, { seq, count, postponed, tasks: now });
    const changes = [];
    for (const [id, task] of before) {
      if (!now.has(id)) changes.push({ change: "removed", task, reason: null, feed });
    }
    for (const [id, task] of now) {
      if (!before.has(id)) changes.push({ change: "added", task, reason: null, feed });
    }
    this.#emit("live", changes);
  }

  /** `feed.left`: no more events of `feed` (left the role, the substitution ended). */
  left({ feed }) {
    const f = this.#feeds.get(feed);
    if (!f || feed === this.own) return;
    this.#feeds.delete(feed);
    this.#emit(
      "live",
      [...f.tasks.values()].map((task) => ({ change: "removed", task, reason: "left", feed })),
    );
  }

  /** Whether every feed agrees with where the server's heartbeat says it stands: the same
   * feeds, and for each the same seq, the same count, as many tasks as the count, and the
   * same postponed count (where both know one). */
  agrees(positions) {
    const names = Object.keys(positions);
    if (names.length !== this.#feeds.size) return false;
    return names.every((name) => {
      const f = this.#feeds.get(name);
      const pos = positions[name];
      const postponedAgrees = pos.postponed == null || f?.postponed == null || f.postponed === pos.postponed;
      return (
        f !== undefined && f.seq === pos.seq && f.count === pos.count && f.tasks.size === pos.count && postponedAgrees
      );
    });
  }

  /** Drop the seqs (not the shown tasks) so that the next connection asks for a snapshot. */
  forgetSeq() {
    for (const f of this.#feeds.values()) f.seq = null;
  }

  #emit(source, changes) {
    const note = Object.freeze({ source, changes });
    for (const fn of this.#listeners) {
      try {
        fn(note);
      } catch (err) {
        console.error("feed listener failed", err);
      }
    }
  }
}
