/**
 * What a person can do to a task: complete, decide (complete with an outcome, after an
 * undo window), postpone, resume, claim, open.
 *
 * The page never removes or counts a task itself after an action: it asks the server,
 * keeps the card marked busy, and the feed event that follows moves the list and the
 * badge. Failures become a toast and the card is usable again.
 */

import { locale, t } from "./i18n.js";
import * as time from "./time.js";
import { clearPending, setBusy, showPending } from "./views/card.js";
import { Status } from "./wire.js";

/** How long a decision can be taken back before it is sent. */
export const UNDO_MS = 5000;

/** "Approved", "Rejected", "Sent back": the past tense of an action's label, as the
 * undo line says it; labels that are not a simple verb read "Done: <label>". Only English
 * verbs are conjugated: other languages say "Entschieden: <label>". */
export function decided(label) {
  const word = label.trim();
  if (locale().startsWith("en") && /^[A-Za-z]+$/.test(word)) {
    if (/e$/i.test(word)) return `${word}d`;
    if (/[^aeiou]y$/i.test(word)) return `${word.slice(0, -1)}ied`;
    return `${word}ed`;
  }
  return t("act.decidedAs", { label: word });
}

export class Actions {
  #busy = new Set();
  /** task id → {send, cancel} of decisions in their undo window. */
  #pending = new Map();

  constructor({ api, toasts, announcer, onChanged, handoff = null }) {
    this.api = api;
    this.toasts = toasts;
    this.announcer = announcer;
    this.handoff = handoff;
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
      const text = explain(err) ?? t(`act.failed.${action}`, { title: task.title, message: err.message });
      this.toasts.show(text, { tone: "error" });
      return null;
    } finally {
      this.#busy.delete(task.id);
      // The card may be gone already (the feed removed it); if not, make it usable again.
      setBusy(card, null);
    }
  }

  complete(task, card) {
    this.handoff?.completing(task.id);
    return this.#run(
      task,
      card,
      "complete",
      () => this.api.complete(task.id),
      () => this.announcer.say(t("act.completed", { title: task.title })),
      () => {
        this.handoff?.failed(task.id);
        return null;
      },
    );
  }

  /**
   * Take the decision `action` (one of `task.actions`) with `comment`: the card shows
   * "Approved — Undo" for UNDO_MS, then the completion is sent. Undo restores the card
   * and sends nothing; a refusal (422 comment_required …) is an error toast and the card
   * comes back as it was.
   */
  decide(task, card, action, comment) {
    if (this.#busy.has(task.id) || this.#pending.has(task.id)) return;
    const said = decided(action.label);
    let timer = 0;
    const cancel = () => {
      window.clearTimeout(timer);
      this.#pending.delete(task.id);
      clearPending(card);
      this.announcer.say(t("act.undone", { title: task.title }));
    };
    const send = () => {
      window.clearTimeout(timer);
      this.#pending.delete(task.id);
      if (card && (!card.isConnected || card.dataset.leaving)) {
        // The process took the step away meanwhile (canceled, reassigned): nothing to send.
        this.announcer.say(t("act.gone", { title: task.title }));
        return;
      }
      clearPending(card, { sending: true });
      this.handoff?.completing(task.id);
      void this.#run(
        task,
        card,
        "decide",
        () => this.api.complete(task.id, { outcome: action.id, comment }),
        () => this.announcer.say(t("act.decided", { said, title: task.title })),
        (err) => {
          this.handoff?.failed(task.id);
          clearPending(card);
          return t("act.failed.decide", { label: action.label.toLowerCase(), title: task.title, message: err.message });
        },
      );
    };
    this.#pending.set(task.id, { send, cancel });
    showPending(card, t("act.pending", { said, title: task.title }), cancel);
    this.announcer.say(t("act.undoWithin", { said, n: UNDO_MS / 1000 }));
    timer = window.setTimeout(send, UNDO_MS);
  }

  /** Send every decision still in its undo window now (the page is going away). */
  flushPending() {
    for (const { send } of [...this.#pending.values()]) send();
  }

  /** The person opened this task's page from a card. */
  opened(taskId) {
    this.handoff?.opened(taskId);
  }

  postpone(task, card, untilMs) {
    return this.#run(
      task,
      card,
      "postpone",
      () => this.api.postpone(task.id, untilMs),
      (result) => {
        const until = time.when(result.postponedUntil ?? untilMs);
        this.toasts.show(t("act.postponed", { until, title: task.title }), {
          action: { label: t("card.undo"), run: () => void this.resume(result, null) },
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
      () => this.toasts.show(t("act.resumed", { title: task.title })),
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
      () => this.announcer.say(t("act.claimed", { title: task.title })),
      (err) =>
        err.code === "already_claimed" || err.status === 404 ? t("act.claimedFirst", { title: task.title }) : null,
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
