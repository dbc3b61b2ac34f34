/**
 * The settings view (`#/settings`, the gear in the top bar): the person's notification
 * preferences, kept on the server (`GET/PUT /api/v1/me/preferences`) so the desktop
 * bridge and Web Push obey them on every device.
 *
 * - which channels may interrupt: the desktop app (bridge) and push notifications; the
 *   panel itself always updates, which the view says rather than offering a switch;
 * - muted processes: picked from the process names of the person's tasks (and those
 *   already muted, even when no task of theirs names them any more);
 * - quiet hours: two time inputs and a time zone, the browser's by default; urgent tasks
 *   still come through.
 *
 * A plain form: labels on every control, Tab order as read, Enter or the button saves.
 */

import { h } from "../dom.js";
import { t } from "../i18n.js";

const DEFAULT_START = "22:00";
const DEFAULT_END = "07:00";

/** The browser's own zone (what a new quiet-hours window starts with). */
const browserZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || "UTC";

/** IANA zone names the browser knows, with `extra` (the saved one, the browser's) kept in. */
function zoneNames(extra) {
  const known = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  return [...new Set([...known, ...extra.filter(Boolean)])].sort();
}

export class SettingsView {
  #generation = 0;

  constructor({ api, onSaved = null }) {
    this.api = api;
    this.onSaved = onSaved; // the saved preferences, for this tab's own notifications
  }

  mount(main) {
    this.status = h("p", { class: "settings__status", role: "status", "data-testid": "settings-status" });
    this.form = h("form", { class: "settings", "data-testid": "settings-form", novalidate: true });
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      void this.#save();
    });
    main.replaceChildren(
      h(
        "section",
        { class: "view view--settings", "aria-labelledby": "view-title" },
        h(
          "header",
          { class: "view__head" },
          h(
            "div",
            {},
            h("h1", { class: "view__title", id: "view-title" }, t("settings.title")),
            h("p", { class: "view__lede" }, t("settings.lede")),
          ),
        ),
        this.form,
        this.status,
      ),
    );
    void this.#load();
  }

  unmount() {
    this.#generation += 1;
  }

  async #load() {
    const generation = ++this.#generation;
    this.status.textContent = t("settings.loading");
    try {
      const [prefs, page] = await Promise.all([
        this.api.preferences(),
        this.api.myTasks({ statuses: ["running", "postponed", "completed", "canceled"], limit: 200 }),
      ]);
      if (generation !== this.#generation) return;
      const seen = page.tasks.map((task) => task.process?.name).filter(Boolean);
      this.#render(prefs, [...new Set([...seen, ...prefs.mutedProcesses])].sort());
      this.status.textContent = "";
    } catch (err) {
      if (generation === this.#generation) this.status.textContent = t("settings.failed", { message: err.message });
    }
  }

  #render(prefs, processes) {
    // The label names the switch; the hint describes it (aria-describedby), so a screen
    // reader says "Push notifications, checkbox" and then what it is about.
    let n = 0;
    const check = (testid, checked, label, hint) => {
      const id = `pref-check-${++n}`;
      const input = h("input", {
        type: "checkbox",
        id,
        "data-testid": testid,
        "aria-describedby": hint ? `${id}-hint` : null,
      });
      input.checked = checked;
      return {
        input,
        row: h(
          "div",
          { class: "settings__check" },
          input,
          h(
            "span",
            {},
            h("label", { class: "settings__label", for: id }, label),
            hint ? h("span", { class: "muted", id: `${id}-hint` }, hint) : null,
          ),
        ),
      };
    };

    this.desktop = check("pref-desktop", prefs.channels.desktop, t("settings.desktop"), t("settings.desktopHint"));
    this.push = check("pref-push", prefs.channels.push, t("settings.push"), t("settings.pushHint"));
    const channels = h(
      "fieldset",
      { class: "settings__group" },
      h("legend", {}, t("settings.channels")),
      h("p", { class: "muted" }, t("settings.panelAlways")),
      this.desktop.row,
      this.push.row,
    );

    this.mutes = processes.map((name) => {
      const box = check("pref-mute", prefs.mutedProcesses.includes(name), name, null);
      box.input.dataset.process = name;
      return box;
    });
    const mutes = h(
      "fieldset",
      { class: "settings__group" },
      h("legend", {}, t("settings.mutes")),
      h("p", { class: "muted" }, t(processes.length ? "settings.mutesHint" : "settings.mutesNone")),
      ...this.mutes.map((m) => m.row),
    );

    const quiet = prefs.quietHours;
    this.quietOn = check("pref-quiet", quiet !== null, t("settings.quietOn"), t("settings.quietHint"));
    this.start = h("input", { type: "time", id: "pref-start", "data-testid": "pref-start", required: true });
    this.end = h("input", { type: "time", id: "pref-end", "data-testid": "pref-end", required: true });
    this.start.value = quiet?.start ?? DEFAULT_START;
    this.end.value = quiet?.end ?? DEFAULT_END;
    const zone = quiet?.tz ?? browserZone();
    this.zone = h(
      "select",
      { id: "pref-zone", "data-testid": "pref-zone" },
      zoneNames([zone, browserZone()]).map((name) => h("option", { value: name }, name.replaceAll("_", " "))),
    );
    this.zone.value = zone;
    const times = h(
      "div",
      { class: "settings__times" },
      h("label", { for: "pref-start" }, t("settings.from")),
      this.start,
      h("label", { for: "pref-end" }, t("settings.to")),
      this.end,
      h("label", { for: "pref-zone" }, t("settings.zone")),
      this.zone,
    );
    const syncQuiet = () => {
      for (const el of [this.start, this.end, this.zone]) el.disabled = !this.quietOn.input.checked;
    };
    this.quietOn.input.addEventListener("change", syncQuiet);
    syncQuiet();
    const quietGroup = h(
      "fieldset",
      { class: "settings__group" },
      h("legend", {}, t("settings.quiet")),
      this.quietOn.row,
      times,
    );

    this.saveBtn = h(
      "button",
      { class: "btn btn--primary", type: "submit", "data-testid": "pref-save" },
      t("settings.save"),
    );
    this.form.replaceChildren(
      channels,
      mutes,
      quietGroup,
      h("div", { class: "settings__actions" }, this.saveBtn, this.status),
    );
  }

  /** What the form says, as `parsePreferences` shapes it; null (and a message) when the
   * quiet hours cannot be saved as they are. */
  #value() {
    let quietHours = null;
    if (this.quietOn.input.checked) {
      const start = this.start.value.slice(0, 5);
      const end = this.end.value.slice(0, 5);
      if (!start || !end || start === end) {
        this.status.textContent = t("settings.badWindow");
        (start ? this.end : this.start).focus();
        return null;
      }
      quietHours = { start, end, tz: this.zone.value };
    }
    return {
      channels: { desktop: this.desktop.input.checked, push: this.push.input.checked },
      mutedProcesses: this.mutes.filter((m) => m.input.checked).map((m) => m.input.dataset.process),
      quietHours,
    };
  }

  async #save() {
    if (!this.saveBtn || this.saveBtn.getAttribute("aria-busy") === "true") return;
    const value = this.#value();
    if (value === null) return;
    this.saveBtn.setAttribute("aria-busy", "true");
    this.status.textContent = "";
    try {
      const saved = await this.api.savePreferences(value);
      this.onSaved?.(saved);
      this.status.textContent = t("settings.saved");
    } catch (err) {
      this.status.textContent = t("settings.failed", { message: err.message });
    } finally {
      this.saveBtn.removeAttribute("aria-busy");
    }
  }
}
