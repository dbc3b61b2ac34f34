/**
 * The communication panel: the "Process tasks" tab (the person's running tasks, live
 * from the feed) and the "Postponed" tab (fetched, refreshed when the feed says a task
 * was postponed or came back), plus the footer with desktop-notification settings.
 */

import { h, renderSoon } from "../dom.js";
import { icon } from "../icons.js";
import { Status } from "../wire.js";
import { createCard, delegateCardActions, focusTarget, updateCard } from "./card.js";
import { KeyedList } from "./keyed-list.js";

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
  #refreshTimer = 0;

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
    this.postponedCount = root.querySelector("[data-role=postponed-count]");
    this.tabs = [...root.querySelectorAll("[role=tab]")];

    const render = { create: (t) => createCard(t), update: updateCard, focusTarget };
    this.running = new KeyedList(this.runningEl, render);
    this.postponed = new KeyedList(this.postponedEl, render);

    this.runningEmpty.append(
      ...emptyState("done", "You're all caught up", "New process tasks appear here the moment a process needs you."),
    );
    this.postponedEmpty.append(
      ...emptyState("clock", "Nothing postponed", "Tasks you postpone wait here until their time comes."),
    );

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
    renderSoon(this, () => this.#renderRunningMeta());
    const touchesPostponed = changes.some(
      (c) => c.reason === "postponed" || c.reason === "resumed" || source === "snapshot",
    );
    if (touchesPostponed) this.refreshPostponed();
  }

  #renderRunningMeta() {
    const count = this.feed.count;
    this.runningCount.textContent = count ? String(count) : "";
    this.runningEmpty.hidden = this.feed.list().length > 0 || !this.feed.known;
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
        this.postponedCount.textContent = tasks.length ? String(tasks.length) : "";
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
        content = [h("span", { class: "foot__text" }, "Desktop notifications aren't available in this browser.")];
      } else if (state === "default") {
        content = [
          h("span", { class: "foot__text" }, "Desktop alerts while this tab is hidden"),
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
            h("span", {}, "Turn on"),
          ),
        ];
      } else if (state === "denied") {
        content = [
          h("span", { class: "foot__text" }, "Desktop notifications are blocked in your browser's site settings."),
        ];
      } else {
        content = [
          h(
            "span",
            { class: "foot__text foot__text--on", "data-testid": "notify-on" },
            icon("bell"),
            " Desktop notifications are on.",
          ),
        ];
      }
      foot.replaceChildren(...content);
    };
    render();
  }
}
