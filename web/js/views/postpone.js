/**
 * The Postpone menu: in 1 hour, tomorrow 09:00, or a chosen date and time in the
 * person's own time zone. One popover for the whole page, opened under the button
 * that asked for it; Escape or a click elsewhere closes it and focus goes back.
 */

import { h } from "../dom.js";
import { t } from "../i18n.js";
import { icon } from "../icons.js";
import * as time from "../time.js";

export class PostponeMenu {
  #anchor = null;
  #onPick = null;

  constructor(el) {
    this.el = el;
    el.addEventListener("toggle", (event) => {
      if (event.newState === "closed") this.#closed();
    });
    el.addEventListener("keydown", (event) => this.#keys(event));
    window.addEventListener("resize", () => this.close());
  }

  /** Open under `anchor`; `onPick(untilMs)` runs when a time is chosen. */
  open(anchor, onPick) {
    if (this.#anchor === anchor && this.el.matches(":popover-open")) {
      this.close();
      return;
    }
    this.close();
    this.#anchor = anchor;
    this.#onPick = onPick;
    anchor.setAttribute("aria-expanded", "true");
    this.#renderMenu();
    this.el.showPopover();
    this.#place();
    this.el.querySelector("[role=menuitem]")?.focus();
  }

  close() {
    if (this.el.matches(":popover-open")) this.el.hidePopover();
  }

  #closed() {
    const anchor = this.#anchor;
    this.#anchor = null;
    if (!anchor) return;
    anchor.setAttribute("aria-expanded", "false");
    if (this.el.contains(document.activeElement) || document.activeElement === document.body) {
      if (anchor.isConnected) anchor.focus();
    }
  }

  #pick(untilMs) {
    const onPick = this.#onPick;
    this.close();
    onPick?.(untilMs);
  }

  #item(testid, iconName, label, hint, onclick) {
    return h(
      "button",
      { class: "menu__item", type: "button", role: "menuitem", "data-testid": testid, onclick },
      icon(iconName),
      h("span", { class: "menu__label" }, label),
      hint ? h("span", { class: "menu__hint" }, hint) : null,
    );
  }

  #renderMenu() {
    const now = Date.now();
    const hour = time.inOneHour(now);
    const tomorrow = time.tomorrowNine(now);
    this.el.replaceChildren(
      h("p", { class: "menu__title", id: "postpone-menu-title" }, t("postpone.title")),
      h(
        "div",
        { class: "menu", role: "menu", "aria-labelledby": "postpone-menu-title" },
        this.#item("postpone-1h", "clock", t("postpone.hour"), time.clock(hour), () => this.#pick(hour)),
        this.#item("postpone-tomorrow", "sunrise", t("postpone.tomorrow"), time.dayClock(tomorrow), () =>
          this.#pick(tomorrow),
        ),
        this.#item("postpone-custom", "calendar", t("postpone.pick"), null, () => this.#renderForm()),
      ),
    );
  }

  #renderForm() {
    const now = Date.now();
    const input = h("input", {
      type: "datetime-local",
      class: "input",
      id: "postpone-at",
      "data-testid": "postpone-at",
      required: true,
      min: time.toLocalInput(now + 60_000),
      value: time.toLocalInput(time.tomorrowNine(now)),
    });
    const error = h("p", { class: "form__error", id: "postpone-error", role: "alert" });
    const form = h(
      "form",
      {
        class: "menu__form",
        novalidate: true,
        onsubmit: (event) => {
          event.preventDefault();
          const at = time.fromLocalInput(input.value);
          if (at === null) {
            error.textContent = t("postpone.noDate");
          } else if (at <= Date.now()) {
            error.textContent = t("postpone.past");
          } else {
            this.#pick(at);
            return;
          }
          input.setAttribute("aria-invalid", "true");
          input.focus();
        },
      },
      h("label", { class: "form__label", for: "postpone-at" }, t("postpone.dateTime")),
      input,
      h("p", { class: "form__hint" }, t("postpone.zone", { zone: time.timeZone() })),
      error,
      h(
        "div",
        { class: "menu__buttons" },
        h(
          "button",
          {
            class: "btn btn--sm btn--quiet",
            type: "button",
            onclick: () => {
              this.#renderMenu();
              this.el.querySelector("[role=menuitem]")?.focus();
            },
          },
          t("postpone.back"),
        ),
        h(
          "button",
          { class: "btn btn--sm btn--primary", type: "submit", "data-testid": "postpone-confirm" },
          t("postpone.confirm"),
        ),
      ),
    );
    input.setAttribute("aria-describedby", "postpone-error");
    this.el.replaceChildren(h("p", { class: "menu__title" }, t("postpone.title")), form);
    this.#place();
    input.focus();
  }

  #place() {
    const anchor = this.#anchor;
    if (!anchor) return;
    const a = anchor.getBoundingClientRect();
    const m = this.el.getBoundingClientRect();
    const vw = document.documentElement.clientWidth;
    const vh = document.documentElement.clientHeight;
    // Open towards the middle of the screen: left-aligned under a button on the left half,
    // right-aligned under one on the right half (the panel side).
    const preferred = a.left + a.width / 2 > vw / 2 ? a.right - m.width : a.left;
    let left = Math.min(preferred, vw - m.width - 8);
    let top = a.bottom + 6;
    if (top + m.height > vh - 8) top = Math.max(8, a.top - m.height - 6);
    left = Math.max(8, left);
    this.el.style.left = `${Math.round(left)}px`;
    this.el.style.top = `${Math.round(top)}px`;
  }

  #keys(event) {
    const items = [...this.el.querySelectorAll("[role=menuitem]")];
    const i = items.indexOf(document.activeElement);
    if (i < 0) return;
    let next = null;
    if (event.key === "ArrowDown") next = items[(i + 1) % items.length];
    else if (event.key === "ArrowUp") next = items[(i - 1 + items.length) % items.length];
    else if (event.key === "Home") next = items[0];
    else if (event.key === "End") next = items[items.length - 1];
    if (next) {
      event.preventDefault();
      next.focus();
    }
  }
}
