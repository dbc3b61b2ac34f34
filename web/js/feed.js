/**
 * The person's feed as the server last described it: running tasks by id, the highest
 * seq applied and the server's count for that seq.
 *
 * The count is never computed here: it is always the `count` that travelled with the
 * last applied seq. Events are applied strictly in seq order; an older or repeated seq is
 * ignored, a seq that skips ahead is reported as a gap (the connection then resumes
 * with `since`). Listeners get one notification per applied message, with what changed.
 */

/** Panel order, the same as the server's snapshot: newest first, then by id. */
export function compareTasks(a, b) {
  if (a.createdAt !== b.createdAt) return b.createdAt - a.createdAt;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export const Applied = Object.freeze({ APPLIED: "applied", STALE: "stale", GAP: "gap" });

export class Feed {
  #tasks = new Map();
  #listeners = new Set();
  /** Highest seq applied; null until the first snapshot. */
  seq = null;
  count = 0;

  get known() {
    return this.seq !== null;
  }

  get(id) {
    return this.#tasks.get(id) ?? null;
  }

  /** Running tasks in panel order. */
  list() {
    return [...this.#tasks.values()].sort(compareTasks);
  }

  /** `fn({source, changes: [{change, task, reason}]})`; returns an unsubscribe function.
   * `source` is "snapshot", "replay" (catching up after a reconnect) or "live". */
  subscribe(fn) {
    this.#listeners.add(fn);
    return () => this.#listeners.delete(fn);
  }

  /** Replace everything with a snapshot; reports the difference to what was shown. */
  reset({ seq, count, tasks }) {
    const before = this.#tasks;
    this.#tasks = new Map(tasks.map((t) => [t.id, t]));
    this.seq = seq;
    this.count = count;
    const changes = [];
    for (const [id, task] of before) {
      if (!this.#tasks.has(id)) changes.push({ change: "removed", task, reason: null });
    }
    for (const [id, task] of this.#tasks) {
      const old = before.get(id);
      if (!old) changes.push({ change: "added", task, reason: null });
      else if (old.updatedAt !== task.updatedAt) changes.push({ change: "updated", task, reason: null });
    }
    this.#emit("snapshot", changes);
  }

  /** Apply one `task.*` event. Returns Applied.APPLIED, STALE (ignored) or GAP. */
  apply(event, source = "live") {
    if (this.seq === null || event.seq > this.seq + 1) return Applied.GAP;
    if (event.seq <= this.seq) return Applied.STALE;
    const { task } = event;
    if (event.change === "removed") this.#tasks.delete(task.id);
    else this.#tasks.set(task.id, task);
    this.seq = event.seq;
    this.count = event.count;
    this.#emit(source, [{ change: event.change, task, reason: event.reason }]);
    return Applied.APPLIED;
  }

  /** The end of a replay. Anything but our own seq means the replay missed something. */
  synced({ seq, count }) {
    if (seq !== this.seq) return Applied.GAP;
    if (count !== this.count) {
      this.count = count;
      this.#emit("replay", []);
    }
    return Applied.APPLIED;
  }

  /** Whether this feed agrees with where the server says it stands (a heartbeat): the
   * same seq, the same count, and as many tasks shown as the count says. */
  agrees({ seq, count }) {
    return seq === this.seq && count === this.count && this.#tasks.size === count;
  }

  /** Drop the seq (not the shown tasks) so that the next connection asks for a snapshot. */
  forgetSeq() {
    this.seq = null;
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
