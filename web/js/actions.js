/**
 * What a person can do to a task: complete, postpone, resume, claim, open.
 *
 * The page never removes or counts a task itself after an action: it asks the server,
 * keeps the card marked busy, and the feed event that follows moves the list and the
 * badge. Failures become a toast and the card is usable again.
 */

import * as time from "./time.js";
import { setBusy } from "./views/card.js";
import { Status } from "./wire.js";

export class Actions {
  #busy = new Set();

  constructor({ api, toasts, announcer, onChanged }) {
    this.api = api;
    this.toasts = toasts;
    this.announcer = announcer;
    /** Called after any successful action (lists that are not fed live refresh). */
    this.onChanged = onChanged;
  }

  async #run(task, card, action, call, success, explain = () => null) {
    if (this.#busy.has(task.id)) return null;
    this.#busy.add(task.id);
    setBusy(card, action);
    try {
      const result = await call();
      success?.(result);
      this.onChanged?.(result);
      return result;
    } catch (err) {
      this.toasts.show(explain(err) ?? `Couldn't ${action} “${task.title}”: ${err.message}`, { tone: "error" });
      return null;
    } finally {
      this.#busy.delete(task.id);
      // The card may be gone already (the feed removed it); if not, make it usable again.
      setBusy(card, null);
    }
  }

  complete(task, card) {
    return this.#run(
      task,
      card,
      "complete",
      () => this.api.complete(task.id),
      () => this.announcer.say(`Completed: ${task.title}`),
    );
  }

  postpone(task, card, untilMs) {
    return this.#run(
      task,
      card,
      "postpone",
      () => this.api.postpone(task.id, untilMs),
      (result) => {
        const until = time.when(result.postponedUntil ?? untilMs);
        this.toasts.show(`Postponed until ${until}: “${task.title}”`, {
          action: { label: "Undo", run: () => void this.resume(result, null) },
        });
      },
    );
  }

  resume(task, card) {
    return this.#run(
      task,
      card,
      "resume",
      () => this.api.resume(task.id),
      () => this.toasts.show(`Back in your process tasks: “${task.title}”`),
    );
  }

  /** Take a queue task: the feeds then move it from the queue to the person's own list
   * (and out of every other member's queue). */
  claim(task, card) {
    return this.#run(
      task,
      card,
      "claim",
      () => this.api.claim(task.id),
      () => this.announcer.say(`Claimed: ${task.title}. It is in your tasks now.`),
      (err) =>
        err.code === "already_claimed" || err.status === 404 ? `Someone else claimed “${task.title}” first.` : null,
    );
  }

  /** "Move down the process": open the page of one step, resuming it first if postponed. */
  async open(task) {
    if (task.status === Status.POSTPONED) {
      const resumed = await this.resume(task, null);
      if (!resumed) return;
    }
    if (task.url) window.location.assign(task.url);
  }
}
