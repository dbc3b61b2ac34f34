/**
 * The process view (`#/processes`), for people whose token carries the `process-admin`
 * role: statistics over a chosen period drawn as small charts (each with its figures as a
 * table), the process definitions with a switch each (new instances accepted or not), and
 * the instances, filtered by status, each opening onto its steps and, while running,
 * offering Cancel (after a confirmation).
 *
 * The server decides who may see this: a token without the role gets 403, and the view
 * then says so instead of showing empty tables. The chosen period and status filter are
 * kept in the address (`#/processes?status=running&period=7d`) without a route change,
 * so a reload shows the same and the keyboard focus stays where it is.
 */

import { h } from "../dom.js";
import { locale, t } from "../i18n.js";
import { icon } from "../icons.js";
import { InstanceStatus, PAGE, ProcessApi } from "../processes-api.js";
import * as time from "../time.js";
import { barChart } from "./charts.js";

const DAY = 24 * 3600 * 1000;
/** The period picker: how far back the statistics look (`null`: everything). */
const PERIODS = [
  { id: "24h", label: "processes.period.day", span: DAY },
  { id: "7d", label: "processes.period.week", span: 7 * DAY },
  { id: "30d", label: "processes.period.month", span: 30 * DAY },
  { id: "365d", label: "processes.period.year", span: 365 * DAY },
  { id: "all", label: "processes.period.all", span: null },
];
const DEFAULT_PERIOD = "30d";
const FILTERS = [
  { id: "all", label: "processes.filter.all", statuses: [] },
  ...Object.values(InstanceStatus).map((s) => ({ id: s, label: `processes.status.${s}`, statuses: [s] })),
];

/** "850 ms", "12 s", "4 min 10 s", "3 h 5 min", "2 d 4 h" in the language shown. */
export function formatDuration(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return unit(ms, "millisecond");
  const s = Math.round(ms / 1000);
  const parts = [
    [Math.floor(s / 86400), "day"],
    [Math.floor((s % 86400) / 3600), "hour"],
    [Math.floor((s % 3600) / 60), "minute"],
    [s % 60, "second"],
  ];
  const first = parts.findIndex(([n]) => n > 0);
  return parts
    .slice(first, first + 2)
    .filter(([n]) => n > 0)
    .map(([n, u]) => unit(n, u))
    .join(" ");
}

const unit = (n, name) =>
  new Intl.NumberFormat(locale(), { style: "unit", unit: name, unitDisplay: "short" }).format(n);

const statusChip = (status) =>
  h("span", { class: `status-chip status-chip--${status}`, "data-status": status }, t(`processes.status.${status}`));

export class ProcessesView {
  /** Each part's answers count only when no newer read of that part (or an unmount) came
   * after them: `#seen[part]` is the number of the newest read. */
  #seen = { stats: 0, defs: 0, list: 0 };
  #mounted = 0;
  #period = PERIODS.find((p) => p.id === DEFAULT_PERIOD);
  #filter = FILTERS[0];
  #cursor = null;
  #instances = [];
  #open = new Set(); // instance ids whose steps are shown

  constructor({ api, dialog, toasts, announcer }) {
    this.processes = new ProcessApi(api);
    this.dialog = dialog;
    this.toasts = toasts;
    this.announcer = announcer;
  }

  mount(main, route) {
    this.#period = PERIODS.find((p) => p.id === route.params.get("period")) ?? this.#period;
    this.#filter = FILTERS.find((f) => f.id === route.params.get("status")) ?? FILTERS[0];
    this.#open.clear();
    this.status = h("p", { class: "view__status", role: "status", "data-testid": "proc-status" });
    this.statsBox = h("div", { class: "proc-charts", "data-testid": "proc-stats", "aria-busy": "true" });
    this.defsBox = h("div", { class: "proc-defs", "data-testid": "proc-definitions" });
    this.listEl = h("ul", {
      class: "proc-list",
      "data-testid": "proc-instances",
      "aria-labelledby": "proc-inst-title",
    });
    this.more = h(
      "button",
      {
        class: "btn btn--quiet load-more",
        type: "button",
        hidden: true,
        onclick: () => void this.#loadInstances(false),
      },
      t("processes.more"),
    );
    this.emptyEl = h("p", { class: "proc-empty", hidden: true }, t("processes.noInstances"));
    this.periodSelect = h(
      "select",
      { id: "proc-period", class: "proc-select", "data-testid": "proc-period", onchange: () => this.#choosePeriod() },
      PERIODS.map((p) => h("option", { value: p.id, selected: p === this.#period }, t(p.label))),
    );
    this.filters = h(
      "div",
      { class: "segmented", role: "group", "aria-label": t("processes.filter.label") },
      FILTERS.map((f) =>
        h(
          "button",
          {
            class: "segmented__item",
            type: "button",
            "data-testid": `proc-filter-${f.id}`,
            "aria-pressed": String(f === this.#filter),
            "aria-current": f === this.#filter ? "true" : null,
            onclick: () => this.#chooseFilter(f),
          },
          t(f.label),
        ),
      ),
    );
    this.root = h(
      "section",
      { class: "view view--processes", "aria-labelledby": "view-title", "data-testid": "processes-view" },
      h(
        "header",
        { class: "view__head" },
        h(
          "div",
          {},
          h("h1", { class: "view__title", id: "view-title" }, t("processes.title")),
          h("p", { class: "view__lede" }, t("processes.lede")),
        ),
        h(
          "button",
          { class: "btn btn--quiet", type: "button", "data-testid": "proc-refresh", onclick: () => this.#loadAll() },
          icon("refresh"),
          h("span", {}, t("processes.refresh")),
        ),
      ),
      this.status,
      h(
        "section",
        { class: "proc-section", "aria-labelledby": "proc-stats-title" },
        h(
          "div",
          { class: "proc-section__head" },
          h("h2", { class: "proc-section__title", id: "proc-stats-title" }, t("processes.stats")),
          h(
            "label",
            { class: "proc-field", for: "proc-period" },
            h("span", { class: "proc-field__label" }, t("processes.period.label")),
            this.periodSelect,
          ),
        ),
        this.statsBox,
      ),
      h(
        "section",
        { class: "proc-section", "aria-labelledby": "proc-defs-title" },
        h("h2", { class: "proc-section__title", id: "proc-defs-title" }, t("processes.definitions")),
        h("p", { class: "proc-section__lede" }, t("processes.definitionsLede")),
        this.defsBox,
      ),
      h(
        "section",
        { class: "proc-section", "aria-labelledby": "proc-inst-title" },
        h(
          "h2",
          {
            class: "proc-section__title",
            id: "proc-inst-title",
            tabindex: "-1",
            "data-testid": "proc-instances-title",
          },
          t("processes.instances"),
        ),
        this.filters,
        this.listEl,
        this.emptyEl,
        this.more,
      ),
    );
    main.replaceChildren(this.root);
    this.#loadAll();
  }

  unmount() {
    this.#mounted += 1;
    if (this.dialog.open) this.dialog.close();
  }

  /** Keep the choices in the address without a route change (no remount, focus stays). */
  #remember() {
    const q = new URLSearchParams();
    if (this.#filter.id !== "all") q.set("status", this.#filter.id);
    if (this.#period.id !== DEFAULT_PERIOD) q.set("period", this.#period.id);
    const query = q.toString();
    window.history.replaceState(null, "", `#/processes${query ? `?${query}` : ""}`);
  }

  #choosePeriod() {
    this.#period = PERIODS.find((p) => p.id === this.periodSelect.value) ?? this.#period;
    this.#remember();
    void this.#loadStats();
  }

  #chooseFilter(filter) {
    this.#filter = filter;
    for (const button of this.filters.querySelectorAll("button")) {
      const on = button.dataset.testid === `proc-filter-${filter.id}`;
      button.setAttribute("aria-pressed", String(on));
      if (on) button.setAttribute("aria-current", "true");
      else button.removeAttribute("aria-current");
    }
    this.#remember();
    void this.#loadInstances(true);
  }

  #loadAll() {
    this.status.textContent = "";
    void this.#loadStats();
    void this.#loadDefinitions();
    void this.#loadInstances(true);
  }

  /** A ticket for a read of `part`; `current(ticket)` says whether its answer still counts. */
  #ticket(part) {
    this.#seen[part] += 1;
    return { part, n: this.#seen[part], mounted: this.#mounted };
  }

  #current(ticket) {
    return ticket.n === this.#seen[ticket.part] && ticket.mounted === this.#mounted;
  }

  /** A failed read: "you may not" for a 403 (the whole view), else the message. */
  #failed(err, ticket) {
    if (!this.#current(ticket)) return;
    if (err.status === 403) {
      this.root.replaceChildren(
        h(
          "div",
          { class: "empty", "data-testid": "proc-refused" },
          h("span", { class: "empty__art", "aria-hidden": "true" }, icon("key")),
          h("h1", { class: "empty__title", id: "view-title" }, t("processes.refused")),
          h("p", { class: "empty__text" }, t("processes.refusedText")),
        ),
      );
      return;
    }
    this.status.textContent = t("processes.failed", { message: err.message });
  }

  // ------------------------------------------------------------ statistics

  async #loadStats() {
    const ticket = this.#ticket("stats");
    const since = this.#period.span === null ? null : Date.now() - this.#period.span;
    this.statsBox.setAttribute("aria-busy", "true");
    try {
      const stats = await this.processes.stats({ since });
      if (!this.#current(ticket)) return;
      this.#renderStats(stats);
      this.statsBox.removeAttribute("aria-busy");
    } catch (err) {
      this.#failed(err, ticket);
    }
  }

  #renderStats({ overall, processes }) {
    const period = t(this.#period.label);
    const counts = barChart({
      id: "chart-counts",
      title: t("processes.chart.counts"),
      caption: t("processes.chart.countsCaption", { period }),
      valueHeader: t("processes.chart.instances"),
      items: Object.values(InstanceStatus).map((s) => ({
        label: t(`processes.status.${s}`),
        value: overall.counts[s],
        display: String(overall.counts[s]),
        tone: s,
      })),
    });
    const d = overall.durations;
    const durations = barChart({
      id: "chart-durations",
      title: t("processes.chart.durations"),
      caption: d.completed
        ? t("processes.chart.durationsCaption", { n: d.completed, period })
        : t("processes.chart.noDurations", { period }),
      valueHeader: t("processes.chart.duration"),
      items: [
        { label: t("processes.chart.mean"), value: d.mean ?? 0, display: formatDuration(d.mean), tone: "mean" },
        { label: t("processes.chart.p50"), value: d.p50 ?? 0, display: formatDuration(d.p50), tone: "p50" },
        { label: t("processes.chart.p95"), value: d.p95 ?? 0, display: formatDuration(d.p95), tone: "p95" },
      ],
    });
    const perProcess = processes.length
      ? h(
          "div",
          { class: "proc-table-wrap", tabindex: "0", role: "region", "aria-labelledby": "proc-per-title" },
          h(
            "table",
            { class: "proc-table", "data-testid": "proc-stats-table" },
            h("caption", { id: "proc-per-title" }, t("processes.perProcess", { period })),
            h(
              "thead",
              {},
              h(
                "tr",
                {},
                h("th", { scope: "col" }, t("processes.col.process")),
                ...Object.values(InstanceStatus).map((s) =>
                  h("th", { scope: "col", class: "num" }, t(`processes.status.${s}`)),
                ),
                h("th", { scope: "col", class: "num" }, t("processes.chart.mean")),
                h("th", { scope: "col", class: "num" }, t("processes.chart.p50")),
                h("th", { scope: "col", class: "num" }, t("processes.chart.p95")),
              ),
            ),
            h(
              "tbody",
              {},
              processes.map((p) =>
                h(
                  "tr",
                  {},
                  h("th", { scope: "row" }, p.name),
                  ...Object.values(InstanceStatus).map((s) => h("td", { class: "num" }, String(p.counts[s]))),
                  h("td", { class: "num" }, formatDuration(p.durations.mean)),
                  h("td", { class: "num" }, formatDuration(p.durations.p50)),
                  h("td", { class: "num" }, formatDuration(p.durations.p95)),
                ),
              ),
            ),
          ),
        )
      : h("p", { class: "proc-empty" }, t("processes.noStats", { period }));
    this.statsBox.replaceChildren(h("div", { class: "proc-charts__row" }, counts, durations), perProcess);
  }

  // ------------------------------------------------------------ definitions

  async #loadDefinitions() {
    const ticket = this.#ticket("defs");
    try {
      const defs = await this.processes.definitions();
      if (!this.#current(ticket)) return;
      this.#renderDefinitions(defs);
    } catch (err) {
      this.#failed(err, ticket);
    }
  }

  #renderDefinitions(defs) {
    if (!defs.length) {
      this.defsBox.replaceChildren(h("p", { class: "proc-empty" }, t("processes.noDefinitions")));
      return;
    }
    const row = (def) => {
      const label = h("span", { class: "proc-switch__state" }, t(def.disabled ? "processes.off" : "processes.on"));
      const toggle = h(
        "button",
        {
          class: "proc-switch",
          type: "button",
          role: "switch",
          "aria-checked": String(!def.disabled),
          "aria-label": t("processes.accepts", { name: def.name }),
          "data-testid": `proc-switch-${def.name}`,
          onclick: () => void this.#toggle(def, toggle, label),
        },
        h("span", { class: "proc-switch__track", "aria-hidden": "true" }, h("span", { class: "proc-switch__knob" })),
        label,
      );
      return h("tr", { "data-definition": def.name }, h("th", { scope: "row" }, def.name), h("td", {}, toggle));
    };
    this.defsBox.replaceChildren(
      h(
        "table",
        { class: "proc-table proc-table--defs" },
        h("caption", { class: "visually-hidden" }, t("processes.definitions")),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col" }, t("processes.col.process")),
            h("th", { scope: "col" }, t("processes.col.newInstances")),
          ),
        ),
        h("tbody", {}, defs.map(row)),
      ),
    );
  }

  async #toggle(def, button, label) {
    if (button.getAttribute("aria-busy") === "true") return;
    const disable = button.getAttribute("aria-checked") === "true";
    button.setAttribute("aria-busy", "true");
    try {
      const now = await this.processes.setDisabled(def.name, disable);
      button.setAttribute("aria-checked", String(!now.disabled));
      label.textContent = t(now.disabled ? "processes.off" : "processes.on");
      this.announcer.say(t(now.disabled ? "processes.disabled" : "processes.enabled", { name: def.name }));
    } catch (err) {
      this.toasts.show(t("processes.switchFailed", { name: def.name, message: err.message }), { tone: "error" });
    } finally {
      button.removeAttribute("aria-busy");
    }
  }

  // ------------------------------------------------------------ instances

  /** `fresh`: the first page again (after a filter change or a cancel); else the next. */
  async #loadInstances(fresh) {
    const ticket = this.#ticket("list");
    try {
      const page = await this.processes.instances({
        statuses: this.#filter.statuses,
        limit: PAGE,
        cursor: fresh ? null : this.#cursor,
      });
      if (!this.#current(ticket)) return;
      this.#instances = fresh ? [...page.instances] : [...this.#instances, ...page.instances];
      this.#cursor = page.nextCursor;
      this.#renderInstances();
    } catch (err) {
      this.#failed(err, ticket);
    }
  }

  #renderInstances() {
    this.listEl.replaceChildren(...this.#instances.map((i) => this.#instanceItem(i)));
    this.emptyEl.hidden = this.#instances.length > 0;
    this.more.hidden = !this.#cursor;
    for (const id of this.#open) {
      const item = this.#item(id);
      if (item)
        void this.#showSteps(
          item,
          this.#instances.find((i) => i.id === id),
        );
    }
  }

  #item(id) {
    return [...this.listEl.children].find((li) => li.dataset.instanceId === id) ?? null;
  }

  #instanceItem(inst) {
    const stepsId = `proc-steps-${this.#instances.indexOf(inst)}`;
    const now = Date.now();
    const took =
      inst.status === InstanceStatus.RUNNING
        ? t("processes.runningFor", { duration: formatDuration(now - (inst.startedAt ?? now)) })
        : t("processes.took", { duration: formatDuration(inst.durationMs) });
    const holders = [...inst.openOwners, ...inst.openRoles.map((r) => t("processes.queue", { role: r }))];
    const stepsButton = h(
      "button",
      {
        class: "btn btn--sm btn--quiet proc-item__steps",
        type: "button",
        "aria-expanded": "false",
        "aria-controls": stepsId,
        "data-testid": "proc-steps-toggle",
        onclick: () => this.#toggleSteps(li, inst, stepsButton),
      },
      icon("chevron"),
      h("span", {}, t("processes.stepsButton", { n: inst.steps.total })),
    );
    const cancel =
      inst.status === InstanceStatus.RUNNING
        ? h(
            "button",
            {
              class: "btn btn--sm proc-item__cancel",
              type: "button",
              "data-testid": "proc-cancel",
              onclick: (event) => this.#confirmCancel(inst, event.currentTarget),
            },
            icon("x"),
            h("span", {}, t("processes.cancel")),
          )
        : null;
    const li = h(
      "li",
      { class: "proc-item", "data-instance-id": inst.id, "data-testid": "proc-instance", "data-status": inst.status },
      h(
        "div",
        { class: "proc-item__head" },
        h(
          "div",
          { class: "proc-item__title" },
          h("span", { class: "proc-item__name" }, inst.name),
          h("span", { class: "proc-item__id" }, inst.id),
        ),
        statusChip(inst.status),
      ),
      h(
        "p",
        { class: "proc-item__meta" },
        h(
          "span",
          {},
          t("processes.started", {
            when: inst.startedAt === null ? "–" : time.absolute(inst.startedAt),
          }),
        ),
        h("span", {}, took),
        h("span", {}, t("processes.openSteps", { open: inst.steps.open, n: inst.steps.total })),
        holders.length ? h("span", {}, t("processes.with", { who: holders.join(", ") })) : null,
      ),
      h("div", { class: "proc-item__actions" }, stepsButton, cancel),
      h("div", { class: "proc-item__detail", id: stepsId, hidden: true }),
    );
    return li;
  }

  #toggleSteps(li, inst, button) {
    const open = button.getAttribute("aria-expanded") !== "true";
    button.setAttribute("aria-expanded", String(open));
    const box = li.querySelector(".proc-item__detail");
    box.hidden = !open;
    if (open) {
      this.#open.add(inst.id);
      void this.#showSteps(li, inst);
    } else {
      this.#open.delete(inst.id);
    }
  }

  async #showSteps(li, inst) {
    const box = li.querySelector(".proc-item__detail");
    li.querySelector(".proc-item__steps")?.setAttribute("aria-expanded", "true");
    box.hidden = false;
    box.setAttribute("aria-busy", "true");
    try {
      const detail = await this.processes.instance(inst.id);
      box.replaceChildren(this.#stepsTable(detail));
    } catch (err) {
      box.replaceChildren(h("p", { class: "view__status" }, t("processes.failed", { message: err.message })));
    } finally {
      box.removeAttribute("aria-busy");
    }
  }

  #stepsTable(detail) {
    if (!detail.steps.length) return h("p", { class: "proc-empty" }, t("processes.noSteps"));
    const who = (s) => s.owner ?? (s.role ? t("processes.queue", { role: s.role }) : "–");
    return h(
      "div",
      {
        class: "proc-table-wrap",
        tabindex: "0",
        role: "region",
        "aria-label": t("processes.stepsOf", { id: detail.id }),
      },
      h(
        "table",
        { class: "proc-table proc-table--steps", "data-testid": "proc-steps" },
        h("caption", { class: "visually-hidden" }, t("processes.stepsOf", { id: detail.id })),
        h(
          "thead",
          {},
          h(
            "tr",
            {},
            h("th", { scope: "col" }, t("processes.col.step")),
            h("th", { scope: "col" }, t("processes.col.owner")),
            h("th", { scope: "col" }, t("processes.col.status")),
            h("th", { scope: "col" }, t("processes.col.started")),
            h("th", { scope: "col" }, t("processes.col.ended")),
            h("th", { scope: "col", class: "num" }, t("processes.col.duration")),
          ),
        ),
        h(
          "tbody",
          {},
          detail.steps.map((s) =>
            h(
              "tr",
              { "data-step-id": s.id },
              h("th", { scope: "row" }, s.title),
              h("td", {}, who(s)),
              h("td", {}, h("span", { class: `status-chip status-chip--${s.status}` }, t(`status.${s.status}`))),
              h("td", {}, s.createdAt === null ? "–" : time.absolute(s.createdAt)),
              h("td", {}, s.endedAt === null ? "–" : time.absolute(s.endedAt)),
              h("td", { class: "num" }, formatDuration(s.durationMs)),
            ),
          ),
        ),
      ),
    );
  }

  #confirmCancel(inst, opener) {
    const dialog = this.dialog;
    const keep = h(
      "button",
      { class: "btn btn--quiet", type: "button", "data-testid": "proc-cancel-keep", onclick: () => dialog.close() },
      t("processes.keep"),
    );
    const confirm = h(
      "button",
      {
        class: "btn btn--danger",
        type: "button",
        "data-testid": "proc-cancel-confirm",
        onclick: () => {
          dialog.close();
          void this.#cancel(inst);
        },
      },
      t("processes.cancelConfirm"),
    );
    dialog.replaceChildren(
      h(
        "div",
        { class: "dialog__body", "data-testid": "proc-cancel-dialog" },
        h("h2", { class: "dialog__title", id: "dialog-title" }, t("processes.cancelTitle", { id: inst.id })),
        h("p", { class: "dialog__lede" }, t("processes.cancelText", { n: inst.steps.open, name: inst.name })),
        h("div", { class: "dialog__actions" }, keep, confirm),
      ),
    );
    dialog.addEventListener("close", () => opener.isConnected && opener.focus(), { once: true });
    dialog.showModal();
    keep.focus(); // the safe choice first: Enter right away does not cancel anything
  }

  async #cancel(inst) {
    try {
      const ended = await this.processes.cancel(inst.id);
      this.toasts.show(t("processes.canceled", { id: inst.id, n: ended.canceledSteps }));
      void this.#loadStats();
      await this.#loadInstances(true);
      // Focus stays near: on the instance, or (filtered out now) on the list's heading.
      const item = this.#item(inst.id);
      (item?.querySelector(".proc-item__steps") ?? this.root.querySelector("#proc-inst-title"))?.focus();
    } catch (err) {
      this.toasts.show(t("processes.cancelFailed", { id: inst.id, message: err.message }), { tone: "error" });
    }
  }
}
