/**
 * The next step opens by itself (docs/protocol.md, "Work-surface fields", the next step):
 * when the person completes a step from this page and, within HANDOFF_MS of sending that
 * completion, a `task.added` arrives (in any feed followed here) whose `follows` names that
 * step, the page offers the new step at once ("Next: <title>" with Open) and, when the
 * finished step had been opened from the page, opens the new one directly.
 *
 * Which steps were opened is kept for the tab (sessionStorage): opening a task's page
 * usually takes this very page away, and it is back (history) by the time the step is done.
 */

import { t } from "./i18n.js";

export const HANDOFF_MS = 10_000;
const OPENED_KEY = "taskbell.opened";
const OPENED_AT_MOST = 50;

/** What to do with an added task, given the completions sent: `null` (not a hand-off),
 * `"offer"` or `"open"`. Pure: `completed` maps step id → {at, opened}. */
export function handoffFor(task, completed, now) {
  const step = task.follows ? completed.get(task.follows) : null;
  if (!step || now - step.at > HANDOFF_MS) return null;
  return step.opened && task.url ? "open" : "offer";
}

export class Handoff {
  /** step id → {at, opened} of the completions sent from this page. */
  #completed = new Map();

  /** `open(task)` opens a task's page the way the panel always does. */
  constructor({ feed, toasts, announcer, open }) {
    this.toasts = toasts;
    this.announcer = announcer;
    this.open = open;
    feed.subscribe(({ source, changes }) => {
      if (source === "snapshot" && this.#completed.size === 0) return;
      for (const { change, task } of changes) if (change === "added") this.#arrived(task);
    });
  }

  /** The person opened this step's page from the panel. */
  opened(taskId) {
    const ids = this.#openedIds().filter((id) => id !== taskId);
    ids.push(taskId);
    try {
      window.sessionStorage.setItem(OPENED_KEY, JSON.stringify(ids.slice(-OPENED_AT_MOST)));
    } catch {
      /* storage off: only this page's own memory is lost */
    }
  }

  /** A completion of `taskId` is being sent now. */
  completing(taskId) {
    const now = Date.now();
    for (const [id, step] of this.#completed) if (now - step.at > HANDOFF_MS) this.#completed.delete(id);
    this.#completed.set(taskId, { at: now, opened: this.#openedIds().includes(taskId) });
  }

  /** The server refused it: no hand-off for that step. */
  failed(taskId) {
    this.#completed.delete(taskId);
  }

  #openedIds() {
    try {
      const ids = JSON.parse(window.sessionStorage.getItem(OPENED_KEY) ?? "[]");
      return Array.isArray(ids) ? ids.filter((i) => typeof i === "string") : [];
    } catch {
      return [];
    }
  }

  #openNext(task) {
    this.opened(task.id);
    this.open(task);
  }

  #arrived(task) {
    const verdict = handoffFor(task, this.#completed, Date.now());
    if (!verdict) return;
    this.#completed.delete(task.follows);
    this.announcer.say(t("act.nextStep", { title: task.title }));
    if (verdict === "open") {
      this.#openNext(task);
      return;
    }
    this.toasts.show(t("act.next", { title: task.title }), {
      timeout: 12_000,
      action: task.url ? { label: t("act.open"), run: () => this.#openNext(task) } : null,
    });
  }
}
