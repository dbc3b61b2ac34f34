/**
 * A connected record (`#/records/{entity}/{id}`) and its Process button ("move down the
 * process"): with one open step it opens that step's page; with several it shows a
 * chooser; with none it says so. A postponed step is resumed when it is opened.
 */

import { h } from "../dom.js";
import { t } from "../i18n.js";
import { icon } from "../icons.js";
import { createCard, delegateCardActions, focusTarget, updateCard } from "./card.js";
import { showChooser } from "./chooser.js";
import { KeyedList } from "./keyed-list.js";

export class RecordView {
  #tasks = [];
  #generation = 0;
  #refreshTimer = 0;
  #unsubscribe = null;

  constructor({ feed, api, actions, postponeMenu, dialog }) {
    this.feed = feed;
    this.api = api;
    this.actions = actions;
    this.postponeMenu = postponeMenu;
    this.dialog = dialog;
  }

  mount(main, route) {
    this.entity = route.entity;
    this.id = route.id;
    this.titleEl = h("h1", { class: "view__title", id: "view-title", "data-testid": "record-title" }, route.id);
    this.summary = h("p", { class: "view__lede", "data-testid": "record-summary" }, t("record.looking"));
    this.button = h(
      "button",
      {
        class: "btn btn--primary btn--process",
        type: "button",
        "data-testid": "process-button",
        "aria-haspopup": "dialog",
        "aria-disabled": "true",
        onclick: () => this.#process(),
      },
      icon("process"),
      h("span", {}, t("record.process")),
    );
    this.listEl = h("ul", {
      class: "task-list task-list--wide",
      "data-testid": "record-steps",
      "aria-label": t("record.stepsLabel"),
    });
    this.list = new KeyedList(this.listEl, {
      create: (t) => createCard(t, { variant: "list", testid: "record-step" }),
      update: updateCard,
      focusTarget,
    });
    delegateCardActions(this.listEl, this.actions, this.postponeMenu);

    main.replaceChildren(
      h(
        "section",
        { class: "view view--record", "aria-labelledby": "view-title" },
        h(
          "nav",
          { class: "crumbs", "aria-label": t("record.breadcrumb") },
          h("a", { href: "#/" }, t("page.overview")),
          h("span", { "aria-hidden": "true" }, "/"),
          h("span", {}, route.entity),
        ),
        h(
          "header",
          { class: "record-head" },
          h("span", { class: "record-head__icon", "aria-hidden": "true" }, icon("record")),
          h(
            "div",
            { class: "record-head__text" },
            h("p", { class: "record-head__entity" }, `${route.entity} · ${route.id}`),
            this.titleEl,
          ),
          h("div", { class: "record-head__actions" }, this.button),
        ),
        this.summary,
        h("h2", { class: "section-title" }, t("record.steps")),
        this.listEl,
      ),
    );
    this.#unsubscribe = this.feed.subscribe(() => this.#scheduleRefresh());
    void this.#load();
  }

  unmount() {
    this.#unsubscribe?.();
    this.#generation += 1;
    window.clearTimeout(this.#refreshTimer);
    if (this.dialog.open) this.dialog.close();
  }

  refresh() {
    this.#scheduleRefresh();
  }

  #scheduleRefresh() {
    window.clearTimeout(this.#refreshTimer);
    this.#refreshTimer = window.setTimeout(() => void this.#load(), 250);
  }

  async #load() {
    const generation = ++this.#generation;
    let result;
    try {
      result = await this.api.recordTasks(this.entity, this.id);
    } catch (err) {
      if (generation === this.#generation) this.summary.textContent = t("record.failed", { message: err.message });
      return;
    }
    if (generation !== this.#generation) return;
    this.#tasks = [...result.tasks];
    const named = this.#tasks.find((t) => t.record?.title);
    this.titleEl.textContent = named ? named.record.title : this.id;
    this.onTitle?.(this.titleEl.textContent);
    const n = this.#tasks.length;
    this.button.setAttribute("aria-disabled", String(n === 0));
    this.button.dataset.count = String(n);
    this.summary.textContent = t("record.waiting", { n });
    this.list.set(this.#tasks, { animate: this.list.size > 0 });
  }

  #process() {
    const tasks = this.#tasks;
    if (tasks.length === 0) return;
    if (tasks.length === 1) {
      void this.actions.open(tasks[0]);
      return;
    }
    this.#choose(tasks);
  }

  /** The "move down the process" chooser: one button per open step. */
  #choose(tasks) {
    showChooser(this.dialog, {
      tasks,
      lede: t("record.chooseText", { n: tasks.length, title: this.titleEl.textContent }),
      pick: (task) => void this.actions.open(task),
      returnTo: this.button,
    });
  }
}
