/**
 * "New since you last looked" (docs/protocol.md): the panel's cards of tasks that arrived
 * since the person last looked carry a "New" label, until they are seen.
 *
 * What was seen lives on the server, per person and feed, as the last seq seen (so every
 * tab and device agrees). A card is new when its task's latest arrival (`task.added`) is
 * past that mark: arrivals come from `GET /me/seen` when a snapshot comes (the server
 * keeps the log) and from the live events after it. While the panel is visible in a
 * focused tab, this tab marks every feed seen up to what it shows (`PUT /me/seen`); the
 * cards it showed as new keep their label while the person goes on looking and lose it
 * when the panel is closed or the tab is left. Other tabs drop theirs when the server's
 * `seen` message arrives.
 */

import { h } from "./dom.js";
import { t } from "./i18n.js";

/** How long the panel waits after the last arrival before marking again (one request
 * for a burst). */
const MARK_AFTER_MS = 600;

/** Whether a task that last arrived at `arrival` ({feed, seq}) is new against `marks`. Pure. */
export function isNew(arrival, marks) {
  return arrival !== undefined && arrival.seq > (marks.get(arrival.feed) ?? 0);
}

export class Seen {
  /** feed → the last seq seen, as the server has it */
  #marks = new Map();
  /** task id → {feed, seq} of its latest arrival */
  #arrived = new Map();
  /** ids this tab showed as new when it marked them seen: labelled while it looks */
  #kept = new Set();
  #looking = false;
  #loads = 0;
  #timer = 0;

  /** `root`: where the cards are; `app`: the element whose `data-panel` opens and closes
   * the panel; `shown()`: whether the panel is on screen now. */
  constructor({ feed, api, root, app, shown }) {
    this.feed = feed;
    this.api = api;
    this.root = root;
    this.shown = shown;
    feed.subscribe((note) => this.#onFeed(note));
    const check = () => this.#check();
    document.addEventListener("visibilitychange", check);
    window.addEventListener("focus", check);
    window.addEventListener("blur", check);
    window.addEventListener("resize", check);
    new MutationObserver(check).observe(app, { attributes: true, attributeFilter: ["data-panel", "hidden"] });
    new MutationObserver(() => this.decorate()).observe(root, { childList: true, subtree: true });
  }

  /** The server's `seen` message: another tab or device (or this one) marked. */
  applied(msg) {
    let moved = false;
    for (const [name, seq] of Object.entries(msg.feeds)) {
      if (seq > (this.#marks.get(name) ?? 0)) {
        this.#marks.set(name, seq);
        moved = true;
      }
    }
    if (moved) this.decorate();
  }

  async #load() {
    const load = ++this.#loads;
    let body;
    try {
      body = await this.api.seen();
    } catch {
      return; // no marks: the next snapshot tries again
    }
    if (load !== this.#loads) return;
    this.#marks = new Map(Object.entries(body.feeds));
    for (const { feed, taskId, seq } of body.new) {
      const known = this.#arrived.get(taskId);
      if (!known || known.seq < seq) this.#arrived.set(taskId, { feed, seq });
    }
    this.decorate();
    const was = this.#looking;
    this.#check();
    if (was && this.#looking) void this.#mark();
  }

  #onFeed({ source, changes }) {
    if (source === "snapshot") {
      void this.#load();
      return;
    }
    for (const { change, task, feed } of changes) {
      if (change === "added") this.#arrived.set(task.id, { feed, seq: this.#seqOf(feed) });
      else if (change === "removed" && this.#arrived.get(task.id)?.feed === feed) this.#arrived.delete(task.id);
    }
    if (this.#looking) this.#markSoon();
  }

  #seqOf(name) {
    return name === this.feed.own ? this.feed.seq : (this.feed.sinceFeeds()[name] ?? 0);
  }

  #check() {
    const looking = document.visibilityState === "visible" && document.hasFocus() && this.shown();
    if (looking === this.#looking) return;
    this.#looking = looking;
    if (looking) {
      this.#mark();
    } else {
      window.clearTimeout(this.#timer);
      this.#kept.clear();
      this.decorate();
    }
  }

  #markSoon() {
    window.clearTimeout(this.#timer);
    this.#timer = window.setTimeout(() => this.#mark(), MARK_AFTER_MS);
  }

  /** Mark every feed seen up to what this tab shows (only those that move). */
  async #mark() {
    if (!this.feed.known) return;
    const feeds = {};
    for (const name of this.feed.names()) {
      const seq = this.#seqOf(name);
      if (seq > (this.#marks.get(name) ?? 0)) feeds[name] = seq;
    }
    if (Object.keys(feeds).length === 0) return;
    for (const [id, arrival] of this.#arrived) if (isNew(arrival, this.#marks)) this.#kept.add(id);
    try {
      this.applied(await this.api.markSeen(feeds));
    } catch {
      /* the marks stay; the next look tries again */
    }
  }

  /** Label the cards of running tasks shown: "New" on each new one, off the others
   * (a postponed task is not waiting: its card is never new). */
  decorate() {
    for (const li of this.root.querySelectorAll("li[data-task-id]")) {
      const id = li.dataset.taskId;
      const waiting = li.dataset.status !== "postponed";
      const fresh = waiting && (this.#kept.has(id) || isNew(this.#arrived.get(id), this.#marks));
      const label = li.querySelector(":scope .card__new");
      if (fresh && !label) {
        li.classList.add("card--new");
        // Beside the time (where a card has room to spare): a label in the head would
        // push long titles onto a second line.
        const mark = h("span", { class: "card__new", "data-testid": "new-mark" }, t("seen.new"));
        const at = li.querySelector(".card__foot > .card__time");
        if (at) at.before(mark);
        else li.querySelector(".card__head")?.append(mark);
      } else if (!fresh && label) {
        li.classList.remove("card--new");
        label.remove();
      }
    }
  }
}
