/**
 * Desktop notifications for new tasks while the tab is hidden.
 *
 * Permission is asked only from a person's click (`request`), never on load. Each
 * notification is tagged with the task id, so an update replaces it and the task's
 * removal (completed, canceled, postponed, reassigned) closes it. Tabs of the same person
 * share the tag, so the browser shows one notification per task, not one per tab (the
 * service worker's Web Push notifications use the same tag).
 *
 * `onGranted` runs once permission is granted (after the click, or at start when it
 * already was): main.js registers Web Push there (push.js).
 */

import { t } from "./i18n.js";

const MAX_AT_ONCE = 3;

export class DesktopNotifier {
  #shown = new Map();
  primed = false;

  constructor({ feed, onOpen, onGranted, preferences = null }) {
    this.feed = feed;
    this.preferences = preferences; // quiet.js: may this task interrupt now?
    this.onOpen = onOpen;
    this.onGranted = onGranted;
    if (this.state() === "granted") onGranted?.();
    feed.subscribe((note) => this.#onFeed(note));
    document.addEventListener("visibilitychange", () => {
      // Back in the tab: the panel itself shows everything, so clear what we raised.
      if (document.visibilityState === "visible") for (const id of [...this.#shown.keys()]) this.#close(id);
    });
  }

  /** "unsupported" | "default" | "granted" | "denied". */
  state() {
    return "Notification" in window ? window.Notification.permission : "unsupported";
  }

  /** Ask for permission; call only from a click handler. */
  async request() {
    if (this.state() !== "default") return this.state();
    let answer;
    try {
      answer = await window.Notification.requestPermission();
    } catch {
      answer = this.state();
    }
    if (answer === "granted") this.onGranted?.();
    return answer;
  }

  #onFeed({ source, changes }) {
    let raised = 0;
    for (const { change, task, reason } of changes) {
      if (change === "removed") {
        // A queue task claimed by this person (or one they stand in for) moves to a feed
        // followed here, whose task.added updates the same notification: keep it.
        const movesHere = reason === "claimed" && this.feed.names().includes(`user:${task.owner}`);
        if (!movesHere && !this.feed.get(task.id)) this.#close(task.id);
      } else if (change === "updated") {
        if (this.#shown.has(task.id)) this.#show(task, false);
      } else if (change === "added" && document.visibilityState === "hidden" && raised < MAX_AT_ONCE) {
        // A first snapshot is what the person already had; only later additions are news.
        if (source === "snapshot" && !this.primed) continue;
        // The person's channel switch, process mutes and quiet hours (the settings view).
        if (this.preferences?.silenced(task)) continue;
        this.#show(task, true);
        raised += 1;
      }
    }
    this.primed = true;
  }

  #show(task, fresh) {
    if (this.state() !== "granted") return;
    const details = [task.process?.name, task.record?.title || task.record?.id].filter(Boolean).join(" · ");
    let n;
    try {
      n = new window.Notification(task.title, {
        body: details || t("notify.body"),
        tag: task.id,
        renotify: false,
        silent: !fresh,
        data: { taskId: task.id },
      });
    } catch {
      return; // some browsers only allow notifications from a service worker
    }
    n.onclick = () => {
      window.focus();
      n.close();
      this.onOpen?.(task.id);
    };
    this.#shown.set(task.id, n);
  }

  #close(id) {
    const n = this.#shown.get(id);
    if (n) {
      this.#shown.delete(id);
      n.close();
    }
  }
}
