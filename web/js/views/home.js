/**
 * The overview (`#/`): a greeting, what is waiting (the server's count), what is
 * postponed, the records that processes are waiting on, and in demo mode the sample
 * process engine.
 */

import { h, renderSoon, setText } from "../dom.js";
import { t } from "../i18n.js";
import { icon } from "../icons.js";
import * as time from "../time.js";
import { Status } from "../wire.js";
import { kindLabel, recordHref } from "./card.js";

function greeting(now = new Date()) {
  const hour = now.getHours();
  if (hour < 5) return t("home.evening");
  if (hour < 12) return t("home.morning");
  if (hour < 18) return t("home.afternoon");
  return t("home.evening");
}

const displayName = (user) => (user ? user.charAt(0).toUpperCase() + user.slice(1) : "");

export class HomeView {
  #unsubscribe = null;
  #timer = 0;

  constructor({ feed, api, session, demo, engine = false }) {
    this.feed = feed;
    this.api = api;
    this.session = session;
    this.demo = demo;
    this.engine = engine; // the demo's button starts a real BPMN process on the engine
  }

  mount(main) {
    this.lede = h("p", { class: "view__lede", "data-testid": "home-summary" });
    this.runningValue = h("span", { class: "tile__value" }, "–");
    this.postponedValue = h("span", { class: "tile__value" }, "–");
    this.records = h("ul", { class: "records" });
    this.recordsEmpty = h("p", { class: "muted" }, t("home.recordsEmpty"));
    this.recent = h("ul", { class: "recent", "data-testid": "recent" });
    this.recentEmpty = h("p", { class: "muted", hidden: true }, t("home.recentEmpty"));

    main.replaceChildren(
      h(
        "section",
        { class: "view view--home", "aria-labelledby": "view-title" },
        h(
          "header",
          { class: "view__head" },
          h(
            "div",
            {},
            h(
              "h1",
              { class: "view__title", id: "view-title" },
              this.session.user
                ? t("home.greetingName", { greeting: greeting(), name: displayName(this.session.user) })
                : greeting(),
            ),
            this.lede,
          ),
        ),
        h(
          "div",
          { class: "tiles" },
          h(
            "a",
            { class: "tile tile--running", href: "#/activities?status=running" },
            h("span", { class: "tile__icon", "aria-hidden": "true" }, icon("bell")),
            h(
              "span",
              { class: "tile__text" },
              this.runningValue,
              h("span", { class: "tile__label" }, t("home.runningTasks")),
            ),
          ),
          h(
            "a",
            { class: "tile tile--postponed", href: "#/activities?status=postponed" },
            h("span", { class: "tile__icon", "aria-hidden": "true" }, icon("clock")),
            h(
              "span",
              { class: "tile__text" },
              this.postponedValue,
              h("span", { class: "tile__label" }, t("home.postponed")),
            ),
          ),
          h(
            "a",
            { class: "tile tile--history", href: "#/activities" },
            h("span", { class: "tile__icon", "aria-hidden": "true" }, icon("list")),
            h(
              "span",
              { class: "tile__text" },
              h("span", { class: "tile__value tile__value--text" }, t("home.allActivities")),
              h("span", { class: "tile__label" }, t("home.allActivitiesHint")),
            ),
          ),
        ),
        this.demo ? this.#demoCard() : null,
        h(
          "section",
          { class: "card-section", "aria-labelledby": "records-title" },
          h("h2", { class: "section-title", id: "records-title" }, t("home.records")),
          this.records,
          this.recordsEmpty,
        ),
        h(
          "section",
          { class: "card-section", "aria-labelledby": "recent-title" },
          h(
            "div",
            { class: "section-head" },
            h("h2", { class: "section-title", id: "recent-title" }, t("home.recent")),
            h("a", { class: "section-link", href: "#/activities" }, t("home.allActivities"), icon("arrowRight")),
          ),
          this.recent,
          this.recentEmpty,
        ),
      ),
    );
    this.#unsubscribe = this.feed.subscribe(() => renderSoon(this, () => this.#render()));
    this.#render();
    window.clearTimeout(this.#timer);
    void this.#loadPostponed();
  }

  unmount() {
    this.#unsubscribe?.();
    window.clearTimeout(this.#timer);
  }

  #demoCard() {
    return h(
      "section",
      { class: "demo-card", "aria-labelledby": "demo-title" },
      h("span", { class: "demo-card__icon", "aria-hidden": "true" }, icon("process")),
      h(
        "div",
        { class: "demo-card__text" },
        h("h2", { class: "demo-card__title", id: "demo-title" }, t("demo.title")),
        h("p", {}, t(this.engine ? "demo.textEngine" : "demo.text")),
      ),
      h(
        "button",
        { class: "btn btn--primary", type: "button", "data-action": "start-demo", "data-testid": "demo-start-home" },
        icon("play"),
        h("span", {}, t("demo.start")),
      ),
    );
  }

  #render() {
    const count = this.feed.count;
    if (this.feed.known) {
      setText(this.runningValue, String(count));
      setText(this.lede, t("home.waiting", { n: count }));
    }
    const postponed = this.feed.postponedOf();
    if (postponed !== null) setText(this.postponedValue, String(postponed)); // live, from `counts`
    const byRecord = new Map();
    for (const task of this.feed.all()) {
      if (!task.record) continue;
      const key = `${task.record.entity}/${task.record.id}`;
      const entry = byRecord.get(key) ?? { record: task.record, n: 0 };
      entry.n += 1;
      byRecord.set(key, entry);
    }
    this.records.replaceChildren(
      ...[...byRecord.values()]
        .slice(0, 8)
        .map(({ record, n }) =>
          h(
            "li",
            {},
            h(
              "a",
              { class: "record-link", href: recordHref(record) },
              h("span", { class: "record-link__icon", "aria-hidden": "true" }, icon("record")),
              h(
                "span",
                { class: "record-link__text" },
                h("span", { class: "record-link__title" }, record.title || record.id),
                h("span", { class: "record-link__entity" }, record.entity),
              ),
              h("span", { class: "record-link__count" }, t("home.steps", { n })),
            ),
          ),
        ),
    );
    this.recordsEmpty.hidden = byRecord.size > 0;
    window.clearTimeout(this.#timer);
    this.#timer = window.setTimeout(() => void this.#loadPostponed(), 250);
  }

  async #loadPostponed() {
    try {
      const [postponed, recent] = await Promise.all([
        this.api.myTasks({ statuses: [Status.POSTPONED], limit: 200 }),
        this.api.myTasks({ statuses: [Status.POSTPONED, Status.COMPLETED, Status.CANCELED], limit: 6 }),
      ]);
      if (this.feed.postponedOf() === null) {
        // A server without `counts`: count what the list holds.
        setText(this.postponedValue, postponed.nextCursor ? "200+" : String(postponed.tasks.length));
      }
      this.#renderRecent(recent.tasks);
    } catch {
      /* keep the last values */
    }
  }

  #renderRecent(tasks) {
    this.recentEmpty.hidden = tasks.length > 0;
    this.recent.replaceChildren(
      ...tasks.map((task) =>
        h(
          "li",
          { class: "recent__row", "data-status": task.status },
          h(
            "span",
            { class: `kind-icon kind-icon--sm kind-icon--${task.kind}`, "aria-hidden": "true" },
            icon(task.kind),
          ),
          h(
            "span",
            { class: "recent__text" },
            h("span", { class: "recent__title" }, task.title),
            h(
              "span",
              { class: "recent__meta" },
              [kindLabel(task.kind), task.process?.name].filter(Boolean).join(" · "),
            ),
          ),
          h(
            "span",
            { class: `status-chip status-chip--${task.status}` },
            task.status === Status.POSTPONED && task.postponedUntil
              ? t("home.until", { when: time.when(task.postponedUntil) })
              : t(`status.${task.status}`),
          ),
          h(
            "time",
            {
              class: "recent__time",
              datetime: new Date(task.updatedAt).toISOString(),
              "data-relative": String(task.updatedAt),
              title: time.full(task.updatedAt),
            },
            time.relative(task.updatedAt),
          ),
        ),
      ),
    );
  }
}
