/**
 * The Activities view (`#/activities?status=…&q=…&sort=…`): every task of the person,
 * including postponed, completed and canceled ones. Search (title, process, record),
 * filters by status with their counts, and sort (newest, due, priority), all done by the
 * server (`GET /me/tasks`, `GET /me/counts`). Titles lead somewhere whatever the status:
 * an open step to its page (a postponed one is resumed first, as the Process button
 * does), a completed or canceled one to its record's default page (`/tasks/{id}/open`).
 * Open steps can be selected, and "Move down the process" opens the one selected or lets
 * the person choose among several. Re-read when the feed moves (a burst is one request).
 */

import { h } from "../dom.js";
import { t } from "../i18n.js";
import { icon } from "../icons.js";
import { Status } from "../wire.js";
import { cardTask, createCard, delegateCardActions, focusTarget, updateCard } from "./card.js";
import { showChooser } from "./chooser.js";
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
const SORTS = [
  { id: "newest", label: "activities.sortNewest" },
  { id: "due", label: "activities.sortDue" },
  { id: "priority", label: "activities.sortPriority" },
];
const PAGE = 50;
const SEARCH_AFTER_MS = 250;
const OPEN = new Set([Status.RUNNING, Status.POSTPONED]);

/** The hash of the view with these choices (defaults left out). */
export function activitiesHash({ filter = "all", q = "", sort = "newest" }) {
  const params = new URLSearchParams();
  if (filter !== "all") params.set("status", filter);
  if (q.trim()) params.set("q", q.trim());
  if (sort !== "newest") params.set("sort", sort);
  const query = params.toString();
  return query ? `#/activities?${query}` : "#/activities";
}

export class ActivitiesView {
  #filter = FILTERS[0];
  #q = "";
  #sort = "newest";
  #shown = [];
  #selected = new Set();
  #cursor = null;
  #generation = 0;
  #refreshTimer = 0;
  #searchTimer = 0;
  #unsubscribe = null;

  constructor({ feed, api, actions, postponeMenu, dialog }) {
    this.feed = feed;
    this.api = api;
    this.actions = actions;
    this.postponeMenu = postponeMenu;
    this.dialog = dialog;
  }

  mount(main, route) {
    this.#filter = FILTERS.find((f) => f.id === route.params.get("status")) ?? FILTERS[0];
    this.#q = (route.params.get("q") ?? "").slice(0, 200);
    this.#sort = SORTS.find((s) => s.id === route.params.get("sort"))?.id ?? "newest";
    this.#selected = new Set();
    this.listEl = h("ul", {
      class: "task-list task-list--wide",
      "data-testid": "activity-list",
      "aria-label": t("activities.title"),
      tabindex: "-1",
    });
    this.list = new KeyedList(this.listEl, {
      create: (task) => this.#decorate(createCard(task, { variant: "list", testid: "activity-item" }), task),
      update: (li, task) => {
        updateCard(li, task);
        this.#decorate(li, task);
      },
      focusTarget,
    });
    delegateCardActions(this.listEl, this.actions, this.postponeMenu);
    this.listEl.addEventListener("click", (event) => this.#onTitle(event));
    this.listEl.addEventListener("change", (event) => this.#onSelect(event));
    this.empty = h("div", { class: "empty", hidden: true });
    this.more = h(
      "button",
      { class: "btn btn--quiet load-more", type: "button", hidden: true, onclick: () => void this.#load(false) },
      t("activities.more"),
    );
    this.status = h("p", { class: "view__status", role: "status" });
    this.found = h("p", { class: "visually-hidden", role: "status", "data-testid": "activity-found" });

    this.search = h("input", {
      class: "input activities__search",
      id: "activities-q",
      type: "search",
      maxlength: "200",
      autocomplete: "off",
      placeholder: t("activities.searchHint"),
      "data-testid": "activity-search",
      value: this.#q,
      oninput: () => this.#searchSoon(),
      onkeydown: (event) => {
        if (event.key === "Enter") this.#searchNow();
      },
    });
    this.sortEl = h(
      "select",
      {
        class: "input activities__sort",
        id: "activities-sort",
        "data-testid": "activity-sort",
        onchange: () => {
          this.#sort = this.sortEl.value;
          this.#changed();
        },
      },
      SORTS.map((s) => h("option", { value: s.id, selected: s.id === this.#sort ? "" : null }, t(s.label))),
    );
    this.sortEl.value = this.#sort;
    const tools = h(
      "div",
      { class: "activities__tools", role: "search" },
      h(
        "label",
        { class: "activities__field activities__field--grow", for: "activities-q" },
        h("span", { class: "activities__label" }, t("activities.search")),
        h("span", { class: "activities__search-box" }, icon("search"), this.search),
      ),
      h(
        "label",
        { class: "activities__field", for: "activities-sort" },
        h("span", { class: "activities__label" }, t("activities.sort")),
        this.sortEl,
      ),
    );

    this.filterLinks = FILTERS.map((f) =>
      h(
        "a",
        {
          class: "segmented__item",
          href: activitiesHash({ filter: f.id, q: this.#q, sort: this.#sort }),
          "data-testid": `filter-${f.id}`,
          "data-filter": f.id,
          "aria-current": f === this.#filter ? "true" : null,
          onclick: (event) => {
            event.preventDefault();
            this.#filter = f;
            this.#changed();
          },
        },
        h("span", {}, t(f.label)),
        h("span", { class: "segmented__count", "data-testid": `filter-count-${f.id}` }),
      ),
    );
    const filters = h(
      "div",
      { class: "segmented", role: "group", "aria-label": t("activities.filter") },
      this.filterLinks,
    );

    this.selection = h("p", { class: "activities__selected", "data-testid": "selection-status" });
    this.moveDown = h(
      "button",
      {
        class: "btn btn--primary btn--process",
        type: "button",
        "data-testid": "move-down",
        "aria-haspopup": "dialog",
        "aria-disabled": "true",
        onclick: () => this.#moveDown(),
      },
      icon("process"),
      h("span", {}, t("activities.moveDown")),
    );
    const bar = h("div", { class: "activities__bar" }, this.selection, this.moveDown);

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
        tools,
        filters,
        bar,
        this.status,
        this.found,
        this.listEl,
        this.empty,
        this.more,
      ),
    );
    this.#renderSelection();
    this.#unsubscribe = this.feed.subscribe(() => this.#scheduleRefresh());
    void this.#load(true);
  }

  unmount() {
    this.#unsubscribe?.();
    this.#generation += 1;
    window.clearTimeout(this.#refreshTimer);
    window.clearTimeout(this.#searchTimer);
    if (this.dialog?.open) this.dialog.close();
  }

  refresh() {
    this.#scheduleRefresh();
  }

  #scheduleRefresh() {
    window.clearTimeout(this.#refreshTimer);
    this.#refreshTimer = window.setTimeout(() => void this.#load(true), 250);
  }

  #searchSoon() {
    window.clearTimeout(this.#searchTimer);
    this.#searchTimer = window.setTimeout(() => this.#searchNow(), SEARCH_AFTER_MS);
  }

  #searchNow() {
    window.clearTimeout(this.#searchTimer);
    if (this.search.value === this.#q) return;
    this.#q = this.search.value;
    this.#changed();
  }

  /** A choice changed: say it in the address (without a new route: focus stays where it
   * is), show it, and read the list again from the top. */
  #changed() {
    const choices = { filter: this.#filter.id, q: this.#q, sort: this.#sort };
    window.history.replaceState(null, "", activitiesHash(choices));
    for (const link of this.filterLinks) {
      const current = link.dataset.filter === this.#filter.id;
      if (current) link.setAttribute("aria-current", "true");
      else link.removeAttribute("aria-current");
      link.setAttribute("href", activitiesHash({ ...choices, filter: link.dataset.filter }));
    }
    this.#shown = [];
    void this.#load(true, { announce: true });
  }

  /** `fresh`: re-read from the top (keeping as many rows as are shown); else the next page. */
  async #load(fresh, { announce = false } = {}) {
    const generation = ++this.#generation;
    const limit = fresh ? Math.min(200, Math.max(PAGE, this.#shown.length)) : PAGE;
    try {
      const [page, counts] = await Promise.all([
        this.api.activities({
          statuses: this.#filter.statuses,
          q: this.#q,
          sort: this.#sort,
          limit,
          cursor: fresh ? null : this.#cursor,
        }),
        fresh ? this.api.statusCounts(this.#q) : Promise.resolve(null),
      ]);
      if (generation !== this.#generation) return;
      this.#shown = fresh
        ? [...page.tasks]
        : [...this.#shown, ...page.tasks.filter((t) => !this.#shown.some((s) => s.id === t.id))];
      this.#cursor = page.nextCursor;
      this.list.set(this.#shown, { animate: !fresh || this.list.size > 0 });
      this.more.hidden = !this.#cursor;
      this.status.textContent = "";
      if (counts) this.#renderCounts(counts);
      this.#pruneSelection();
      if (announce) this.found.textContent = t("activities.found", { n: this.#shown.length });
      this.#renderEmpty();
    } catch (err) {
      if (generation === this.#generation) this.status.textContent = t("activities.failed", { message: err.message });
    }
  }

  #renderCounts(counts) {
    const total = Object.values(counts).reduce((a, b) => a + b, 0);
    for (const link of this.filterLinks) {
      const id = link.dataset.filter;
      link.querySelector(".segmented__count").textContent = String(id === "all" ? total : (counts[id] ?? 0));
    }
  }

  #renderEmpty() {
    this.empty.hidden = this.#shown.length > 0;
    if (this.#shown.length) return;
    const searching = this.#q.trim() !== "";
    this.empty.replaceChildren(
      h("span", { class: "empty__art", "aria-hidden": "true" }, icon(searching ? "search" : "inbox")),
      h(
        "p",
        { class: "empty__title" },
        searching ? t("activities.noMatch", { q: this.#q.trim() }) : t(this.#filter.none),
      ),
      h("p", { class: "empty__text" }, t(searching ? "activities.noMatchText" : "activities.noneText")),
    );
  }

  /** What the list adds to a card: a title that leads somewhere whatever the status, and
   * a selection box on open steps. */
  #decorate(li, task) {
    const title = li.querySelector(".card__title");
    if (!OPEN.has(task.status)) {
      title.setAttribute("href", `${this.api.base}/tasks/${encodeURIComponent(task.id)}/open`);
      title.title = t("activities.openFinal");
    } else {
      title.removeAttribute("title");
    }
    // Every row keeps the box's column, so that titles line up with or without one.
    let slot = li.querySelector(".card__select-slot");
    if (!slot) {
      slot = h("span", { class: "card__select-slot" });
      li.querySelector(".card__inner").prepend(slot);
    }
    let box = slot.querySelector(".card__select");
    if (OPEN.has(task.status) && !box) {
      box = h("input", {
        class: "card__select",
        type: "checkbox",
        "data-testid": "activity-select",
        "aria-label": t("activities.select", { title: task.title }),
      });
      slot.append(box);
    } else if (!OPEN.has(task.status) && box) {
      box.remove();
      box = null;
    }
    if (box) {
      box.checked = this.#selected.has(task.id);
      box.setAttribute("aria-label", t("activities.select", { title: task.title }));
    }
    return li;
  }

  /** Titles: a postponed step is resumed before its page opens; a final one goes to its
   * record's page through `/tasks/{id}/open` (with the token a link cannot send). */
  #onTitle(event) {
    const link = event.target.closest("a.card__title[href]");
    const card = link?.closest("[data-task-id]");
    const task = card ? cardTask(card) : null;
    if (!task || event.ctrlKey || event.metaKey || event.shiftKey) return;
    if (task.status === Status.POSTPONED) {
      event.preventDefault();
      void this.actions.open(task);
    } else if (!OPEN.has(task.status)) {
      event.preventDefault();
      window.location.assign(this.api.openHref(task.id));
    }
  }

  #onSelect(event) {
    const box = event.target.closest("input.card__select");
    const card = box?.closest("[data-task-id]");
    if (!card) return;
    if (box.checked) this.#selected.add(card.dataset.taskId);
    else this.#selected.delete(card.dataset.taskId);
    this.#renderSelection();
  }

  /** Forget selected steps that are no longer open or no longer listed. */
  #pruneSelection() {
    const open = new Set(this.#shown.filter((task) => OPEN.has(task.status)).map((task) => task.id));
    for (const id of [...this.#selected]) if (!open.has(id)) this.#selected.delete(id);
    this.#renderSelection();
  }

  #renderSelection() {
    const n = this.#selected.size;
    this.selection.textContent = t("activities.selected", { n });
    this.moveDown.setAttribute("aria-disabled", String(n === 0));
    this.moveDown.dataset.count = String(n);
  }

  /** "Move down the process" with the selection: one step opens, several are offered. */
  #moveDown() {
    const tasks = this.#shown.filter((task) => this.#selected.has(task.id) && OPEN.has(task.status));
    if (tasks.length === 0) return;
    if (tasks.length === 1) {
      void this.actions.open(tasks[0]);
      return;
    }
    showChooser(this.dialog, {
      tasks,
      lede: t("activities.chooseText", { n: tasks.length }),
      pick: (task) => void this.actions.open(task),
      returnTo: this.moveDown,
    });
  }
}
