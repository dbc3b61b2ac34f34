/**
 * The Activities view (`#/activities?status=...`): every task of the person, including
 * postponed, completed and canceled ones, filterable by status. A postponed task can be
 * resumed early from here. Re-read when the feed moves (a burst is one request).
 */

import { h } from "../dom.js";
import { t } from "../i18n.js";
import { icon } from "../icons.js";
import { Status } from "../wire.js";
import { createCard, delegateCardActions, focusTarget, updateCard } from "./card.js";
import { KeyedList } from "./keyed-list.js";

/** `label` and `none` are catalogue keys (i18n.js). */
const FILTERS = [
  { id: "all", label: "activities.all", none: "activities.none", statuses: Object.values(Status) },
  { id: Status.RUNNING, label: "status.running", none: "activities.noneRunning", statuses: [Status.RUNNING] },
  {
    id: Status.POSTPONED,
    label: "status.postponed",
    none: "activities.nonePostponed",
    statuses: [Status.POSTPONED],
  },
  {
    id: Status.COMPLETED,
    label: "status.completed",
    none: "activities.noneCompleted",
    statuses: [Status.COMPLETED],
  },
  { id: Status.CANCELED, label: "status.canceled", none: "activities.noneCanceled", statuses: [Status.CANCELED] },
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
      "aria-label": t("activities.title"),
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
      t("activities.more"),
    );
    this.status = h("p", { class: "view__status", role: "status" });

    const filters = h(
      "div",
      { class: "segmented", role: "group", "aria-label": t("activities.filter") },
      FILTERS.map((f) =>
        h(
          "a",
          {
            class: "segmented__item",
            href: f.id === "all" ? "#/activities" : `#/activities?status=${f.id}`,
            "data-testid": `filter-${f.id}`,
            "aria-current": f === this.#filter ? "true" : null,
          },
          t(f.label),
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
            h("h1", { class: "view__title", id: "view-title" }, t("activities.title")),
            h("p", { class: "view__lede" }, t("activities.lede")),
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
          h("p", { class: "empty__title" }, t(this.#filter.none)),
          h("p", { class: "empty__text" }, t("activities.noneText")),
        );
      }
    } catch (err) {
      if (generation === this.#generation) this.status.textContent = t("activities.failed", { message: err.message });
    }
  }
}
