/**
 * The Activities view (`#/activities?status=...`): every task of the person, including
 * postponed, completed and canceled ones, filterable by status. A postponed task can be
 * resumed early from here. Re-read when the feed moves (a burst is one request).
 */

import { h } from "../dom.js";
import { icon } from "../icons.js";
import { Status } from "../wire.js";
import { createCard, delegateCardActions, focusTarget, updateCard } from "./card.js";
import { KeyedList } from "./keyed-list.js";

const FILTERS = [
  { id: "all", label: "All", statuses: Object.values(Status) },
  { id: Status.RUNNING, label: "Running", statuses: [Status.RUNNING] },
  { id: Status.POSTPONED, label: "Postponed", statuses: [Status.POSTPONED] },
  { id: Status.COMPLETED, label: "Completed", statuses: [Status.COMPLETED] },
  { id: Status.CANCELED, label: "Canceled", statuses: [Status.CANCELED] },
];
const PAGE = 50;

export class ActivitiesView {
  #filter = FILTERS[0];
  #shown = [];
  #cursor = null;
  #generation = 0;
  #refreshTimer = 0;
  #unsubscribe = null;

  constructor({ feed, api, actions, postponeMenu }) {
    this.feed = feed;
    this.api = api;
    this.actions = actions;
    this.postponeMenu = postponeMenu;
  }

  mount(main, route) {
    this.#filter = FILTERS.find((f) => f.id === route.params.get("status")) ?? FILTERS[0];
    this.listEl = h("ul", {
      class: "task-list task-list--wide",
      "data-testid": "activity-list",
      "aria-label": "Activities",
      tabindex: "-1",
    });
    this.list = new KeyedList(this.listEl, {
      create: (t) => createCard(t, { variant: "list", testid: "activity-item" }),
      update: updateCard,
      focusTarget,
    });
    delegateCardActions(this.listEl, this.actions, this.postponeMenu);
    this.empty = h("div", { class: "empty", hidden: true });
    this.more = h(
      "button",
      { class: "btn btn--quiet load-more", type: "button", hidden: true, onclick: () => void this.#load(false) },
      "Show more",
    );
    this.status = h("p", { class: "view__status", role: "status" });

    const filters = h(
      "div",
      { class: "segmented", role: "group", "aria-label": "Filter by status" },
      FILTERS.map((f) =>
        h(
          "a",
          {
            class: "segmented__item",
            href: f.id === "all" ? "#/activities" : `#/activities?status=${f.id}`,
            "data-testid": `filter-${f.id}`,
            "aria-current": f === this.#filter ? "true" : null,
          },
          f.label,
        ),
      ),
    );

    main.replaceChildren(
      h(
        "section",
        { class: "view view--activities", "aria-labelledby": "view-title" },
        h(
          "header",
          { class: "view__head" },
          h(
            "div",
            {},
            h("h1", { class: "view__title", id: "view-title" }, "Activities"),
            h(
              "p",
              { class: "view__lede" },
              "Every step a process gave you. Find a postponed one and pick it up early.",
            ),
          ),
        ),
        filters,
        this.status,
        this.listEl,
        this.empty,
        this.more,
      ),
    );
    this.#unsubscribe = this.feed.subscribe(() => this.#scheduleRefresh());
    void this.#load(true);
  }

  unmount() {
    this.#unsubscribe?.();
    this.#generation += 1;
    window.clearTimeout(this.#refreshTimer);
  }

  refresh() {
    this.#scheduleRefresh();
  }

  #scheduleRefresh() {
    window.clearTimeout(this.#refreshTimer);
    this.#refreshTimer = window.setTimeout(() => void this.#load(true), 250);
  }

  /** `fresh`: re-read from the top (keeping as many rows as are shown); else the next page. */
  async #load(fresh) {
    const generation = ++this.#generation;
    const limit = fresh ? Math.min(200, Math.max(PAGE, this.#shown.length)) : PAGE;
    try {
      const page = await this.api.myTasks({
        statuses: this.#filter.statuses,
        limit,
        cursor: fresh ? null : this.#cursor,
      });
      if (generation !== this.#generation) return;
      this.#shown = fresh
        ? [...page.tasks]
        : [...this.#shown, ...page.tasks.filter((t) => !this.#shown.some((s) => s.id === t.id))];
      this.#cursor = page.nextCursor;
      this.list.set(this.#shown, { animate: !fresh || this.list.size > 0 });
      this.more.hidden = !this.#cursor;
      this.status.textContent = "";
      this.empty.hidden = this.#shown.length > 0;
      if (!this.#shown.length) {
        this.empty.replaceChildren(
          h("span", { class: "empty__art", "aria-hidden": "true" }, icon("inbox")),
          h(
            "p",
            { class: "empty__title" },
            this.#filter.id === "all" ? "No activities yet" : `No ${this.#filter.label.toLowerCase()} activities`,
          ),
          h("p", { class: "empty__text" }, "Steps that processes give you are listed here, whatever became of them."),
        );
      }
    } catch (err) {
      if (generation === this.#generation) this.status.textContent = `Couldn't load activities: ${err.message}`;
    }
  }
}
