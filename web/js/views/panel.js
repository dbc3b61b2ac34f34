/**
 * The communication panel: the "Process tasks" tab (live from the feeds: the person's own
 * running tasks, then one section per role queue they are in, with a Claim button on
 * each card, then one per person they stand in for, each section with its live count)
 * and the "Postponed" tab (its count is the own feed's live `counts.postponed`; the list is
 * fetched, and fetched again whenever that count moves or a task was postponed or came
 * back), plus the footer with desktop-notification settings.
 */

import { h, renderSoon, setText } from "../dom.js";
import { t } from "../i18n.js";
import { icon } from "../icons.js";
import { Status } from "../wire.js";
import { createCard, delegateCardActions, focusTarget, updateCard } from "./card.js";
import { KeyedList } from "./keyed-list.js";

let sectionNumber = 0;

const displayName = (user) => user.charAt(0).toUpperCase() + user.slice(1);

/** A feed's section heading: "Queue: approvers" or "Standing in for Bob". */
export function feedTitle(name) {
  const [kind, id] = [name.slice(0, name.indexOf(":")), name.slice(name.indexOf(":") + 1)];
  return kind === "role" ? t("panel.queue", { role: id }) : t("panel.standingIn", { name: displayName(id) });
}

function emptyState(iconName, title, text) {
  return [
    h("span", { class: "empty__art", "aria-hidden": "true" }, icon(iconName)),
    h("p", { class: "empty__title" }, title),
    h("p", { class: "empty__text" }, text),
  ];
}

export class PanelView {
  #tab = "running";
  #postponedLoaded = false;
  #postponedSeen = null; // the own feed's postponed count the list was last fetched for
  #refreshTimer = 0;
  /** feed name → {section, count, list, empty} for every feed besides the own one. */
  #sections = new Map();

  constructor({ root, feed, api, actions, postponeMenu, notifier }) {
    this.root = root;
    this.feed = feed;
    this.api = api;
    this.actions = actions;
    this.notifier = notifier;
    this.runningEl = root.querySelector("#task-list");
    this.postponedEl = root.querySelector("#postponed-list");
    this.runningEmpty = root.querySelector("[data-role=running-empty]");
    this.postponedEmpty = root.querySelector("[data-role=postponed-empty]");
    this.runningCount = root.querySelector("[data-role=running-count]");
    this.ownHead = root.querySelector("[data-role=own-head]");
    this.ownCount = root.querySelector("[data-role=own-count]");
    this.ownEmpty = root.querySelector("[data-role=own-empty]");
    this.sectionsEl = root.querySelector("#feed-sections");
    this.postponeMenu = postponeMenu;
    this.postponedCount = root.querySelector("[data-role=postponed-count]");
    this.tabs = [...root.querySelectorAll("[role=tab]")];

    const render = { create: (t) => createCard(t), update: updateCard, focusTarget };
    this.running = new KeyedList(this.runningEl, render);
    this.postponed = new KeyedList(this.postponedEl, render);

    this.runningEmpty.append(...emptyState("done", t("panel.caughtUp"), t("panel.caughtUpText")));
    this.postponedEmpty.append(...emptyState("clock", t("panel.nothingPostponed"), t("panel.nothingPostponedText")));

    delegateCardActions(this.runningEl, actions, postponeMenu);
    delegateCardActions(this.postponedEl, actions, postponeMenu);

    for (const tab of this.tabs) {
      tab.addEventListener("click", () => this.selectTab(tab.dataset.tab));
      tab.addEventListener("keydown", (event) => this.#tabKeys(event));
    }

    feed.subscribe((note) => this.#onFeed(note));
    this.#renderFooter();
    this.#renderRunningMeta();
  }

  #onFeed({ source, changes }) {
    this.running.set(this.feed.list(), { animate: source !== "snapshot" || this.running.size > 0 });
    // A card claimed by someone else slides out of the queue rather than just folding.
    for (const { change, reason, task, feed } of changes) {
      if (change === "removed" && reason === "claimed") {
        this.#sections.get(feed)?.list.element(task.id)?.setAttribute("data-leave-as", "claimed");
      }
    }
    this.#renderSections(source);
    renderSoon(this, () => this.#renderRunningMeta());
    const postponed = this.feed.postponedOf();
    const moved = postponed !== null && postponed !== this.#postponedSeen;
    this.#postponedSeen = postponed;
    this.#renderPostponedCount(this.postponed.size);
    const touchesPostponed = changes.some(
      (c) => c.reason === "postponed" || c.reason === "resumed" || source === "snapshot",
    );
    if (touchesPostponed || moved) this.refreshPostponed();
  }

  /** The Postponed tab's count: the server's live count; the list's length only from a
   * server without `counts`. */
  #renderPostponedCount(listed) {
    const n = this.feed.postponedOf() ?? listed;
    this.postponedCount.textContent = n ? String(n) : "";
  }

  /** One section per followed feed besides the own one, in the feed's order; a feed left
   * takes its section with it. */
  #renderSections(source) {
    const names = this.feed.names().filter((n) => n !== this.feed.own);
    for (const [name, s] of this.#sections) {
      if (!names.includes(name)) {
        s.section.remove();
        this.#sections.delete(name);
      }
    }
    let prev = null;
    for (const name of names) {
      let s = this.#sections.get(name);
      if (!s) {
        s = this.#createSection(name);
        this.#sections.set(name, s);
      }
      const ref = prev ? prev.nextElementSibling : this.sectionsEl.firstElementChild;
      if (ref !== s.section) this.sectionsEl.insertBefore(s.section, ref);
      prev = s.section;
      s.list.set(this.feed.list(name), { animate: source !== "snapshot" || s.list.size > 0 });
    }
  }

  #createSection(name) {
    const queue = name.startsWith("role:");
    sectionNumber += 1;
    const titleId = `feed-title-${sectionNumber}`;
    const count = h("span", { class: "feed-head__count", "data-testid": "feed-count" });
    const listEl = h("ul", { class: "task-list", "data-testid": "feed-list", "aria-labelledby": titleId });
    const empty = h("p", { class: "feed-empty", hidden: true }, t(queue ? "panel.queueEmpty" : "panel.standInEmpty"));
    const section = h(
      "section",
      {
        class: `feed-section feed-section--${queue ? "queue" : "standin"}`,
        "data-feed": name,
        "data-testid": "feed-section",
      },
      h(
        "h3",
        { class: "feed-head", id: titleId },
        h("span", { class: "feed-head__icon", "aria-hidden": "true" }, icon(queue ? "people" : "person")),
        h("span", { class: "feed-head__title", "data-testid": "feed-title" }, feedTitle(name)),
        count,
      ),
      listEl,
      empty,
    );
    const testid = queue ? "queue-item" : "standin-item";
    const mode = queue ? "queue" : "own";
    const list = new KeyedList(listEl, {
      create: (t) => createCard(t, { testid, mode }),
      update: updateCard,
      focusTarget,
    });
    delegateCardActions(listEl, this.actions, this.postponeMenu);
    return { section, count, list, empty };
  }

  #renderRunningMeta() {
    const count = this.feed.count;
    const others = this.#sections.size > 0;
    const ownCount = this.feed.countOf(this.feed.own);
    this.runningCount.textContent = count ? String(count) : "";
    this.ownHead.hidden = !others;
    setText(this.ownCount, String(ownCount));
    for (const [name, s] of this.#sections) {
      const n = this.feed.countOf(name);
      setText(s.count, String(n));
      s.count.setAttribute("aria-label", t("count.tasks", { n }));
      s.empty.hidden = this.feed.list(name).length > 0;
    }
    const ownEmpty = this.feed.list().length === 0;
    // All caught up only when nothing waits anywhere; else a quiet line under "My tasks".
    this.runningEmpty.hidden = !ownEmpty || !this.feed.known || (others && count > 0);
    this.ownEmpty.hidden = !ownEmpty || !this.feed.known || !this.runningEmpty.hidden;
    this.runningEl.setAttribute("aria-busy", String(!this.feed.known));
  }

  selectTab(name) {
    this.#tab = name;
    for (const tab of this.tabs) {
      const selected = tab.dataset.tab === name;
      tab.setAttribute("aria-selected", String(selected));
      tab.tabIndex = selected ? 0 : -1;
      this.root.querySelector(`#${tab.getAttribute("aria-controls")}`).hidden = !selected;
    }
    if (name === "postponed") this.refreshPostponed();
  }

  #tabKeys(event) {
    const i = this.tabs.indexOf(event.currentTarget);
    let next = null;
    if (event.key === "ArrowRight") next = this.tabs[(i + 1) % this.tabs.length];
    else if (event.key === "ArrowLeft") next = this.tabs[(i - 1 + this.tabs.length) % this.tabs.length];
    if (next) {
      event.preventDefault();
      this.selectTab(next.dataset.tab);
      next.focus();
    }
  }

  /** Re-read the postponed tasks (debounced: a burst of postponements is one request). */
  refreshPostponed() {
    window.clearTimeout(this.#refreshTimer);
    const delay = this.#postponedLoaded ? 150 : 0;
    this.#refreshTimer = window.setTimeout(async () => {
      try {
        const page = await this.api.myTasks({ statuses: [Status.POSTPONED], limit: 200 });
        const tasks = [...page.tasks].sort((a, b) => (a.postponedUntil ?? 0) - (b.postponedUntil ?? 0));
        this.postponed.set(tasks, { animate: this.#postponedLoaded });
        this.#postponedLoaded = true;
        this.#renderPostponedCount(tasks.length);
        this.postponedEmpty.hidden = tasks.length > 0;
      } catch {
        /* the next feed change or tab switch tries again */
      }
    }, delay);
  }

  #renderFooter() {
    const foot = this.root.querySelector("#panel-foot");
    const render = () => {
      const state = this.notifier.state();
      let content;
      if (state === "unsupported") {
        content = [h("span", { class: "foot__text" }, t("notify.unsupported"))];
      } else if (state === "default") {
        content = [
          h("span", { class: "foot__text" }, t("notify.offer")),
          h(
            "button",
            {
              class: "btn btn--sm btn--quiet",
              type: "button",
              "data-testid": "notify-enable",
              onclick: async () => {
                await this.notifier.request();
                render();
              },
            },
            icon("bell"),
            h("span", {}, t("notify.turnOn")),
          ),
        ];
      } else if (state === "denied") {
        content = [h("span", { class: "foot__text" }, t("notify.blocked"))];
      } else {
        content = [
          h(
            "span",
            { class: "foot__text foot__text--on", "data-testid": "notify-on" },
            icon("bell"),
            ` ${t("notify.on")}`,
          ),
        ];
      }
      foot.replaceChildren(...content);
    };
    render();
  }
}
