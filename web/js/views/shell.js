/**
 * The frame around the views: the communication-panel strip with the bell and its badge,
 * the connection state, who is signed in, the demo engine control, the panel's
 * open/closed state, and the page title. The badge shows the server's count for the
 * highest seq applied and is absent from the DOM at 0.
 */

import { ConnState } from "../connection.js";
import { h, motionAllowed, renderSoon, setText } from "../dom.js";
import { framedByBell } from "../framed.js";
import { t } from "../i18n.js";
import { icon } from "../icons.js";

const CONN_TEXT = {
  [ConnState.CONNECTING]: "conn.connecting",
  [ConnState.LIVE]: "conn.live",
  [ConnState.RECONNECTING]: "conn.reconnecting",
  [ConnState.STOPPED]: "conn.offline",
};

/** The badge's aria-label: "1 process task", "3 process tasks", "3 Prozessaufgaben". */
export const tasksLabel = (n) => t("count.processTasks", { n });

/** Below this width the panel covers the page instead of sitting beside it. */
const DOCKED = window.matchMedia("(min-width: 64em)");

export class Shell {
  #badge = null;
  #routed = false;
  pageName = "";

  constructor({ app, feed, session, demo, toasts, api }) {
    this.app = app;
    this.feed = feed;
    this.session = session;
    this.toasts = toasts;
    this.api = api;
    this.bell = app.querySelector("[data-testid=bell]");
    this.bellLabel = app.querySelector("[data-role=bell-label]");
    this.conn = app.querySelector("[data-testid=conn-state]");
    this.banner = app.querySelector("#banner");
    this.panel = app.querySelector("#panel");

    this.bell.addEventListener("click", () => this.setPanel(!this.panelOpen, { focus: true }));
    app.querySelector("[data-action=close-panel]").append(icon("x"));
    app.querySelector("[data-action=close-panel]").addEventListener("click", () => {
      this.setPanel(false);
      this.bell.focus();
    });
    this.panel.addEventListener("keydown", (event) => {
      // Framed by the embeddable bell, Escape closes the bell's popover instead (framed.js).
      if (event.key === "Escape" && !DOCKED.matches && this.panelOpen && !framedByBell()) {
        this.setPanel(false);
        this.bell.focus();
      }
    });
    // A section link on a narrow screen means "show me that page", so the panel makes way.
    for (const link of app.querySelectorAll("[data-nav]")) {
      link.addEventListener("click", () => {
        if (!DOCKED.matches) this.setPanel(false);
      });
    }
    // The process view's links, for process admins only (the server refuses anyone else).
    for (const link of app.querySelectorAll("[data-admin-link]")) link.hidden = !session.isProcessAdmin;
    this.#renderWho(demo);
    if (demo) this.#renderDemoControls();
    app.addEventListener("click", (event) => {
      const start = event.target.closest("[data-action=start-demo]");
      if (start) void this.#startDemo(start);
    });
    feed.subscribe(() => renderSoon(this, () => this.#renderCount()));
    this.#renderCount();
  }

  get panelOpen() {
    return this.app.dataset.panel === "open";
  }

  setPanel(open, { focus = false } = {}) {
    this.app.dataset.panel = open ? "open" : "closed";
    this.bell.setAttribute("aria-expanded", String(open));
    if (open && focus && !DOCKED.matches) this.app.querySelector("#task-list")?.focus();
  }

  /** Called on every route change: highlight the section; on narrow screens the panel
   * belongs to the overview and is closed elsewhere. */
  route(route) {
    this.app.dataset.route = route.name;
    for (const link of this.app.querySelectorAll("[data-nav]")) {
      if (link.dataset.nav === route.name) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    // Narrow screens: the panel covers the page, so it opens with the first page (the
    // overview) and afterwards only from the bell.
    if (DOCKED.matches) {
      if (route.name === "home") this.setPanel(true);
    } else {
      this.setPanel(route.name === "home" && !this.#routed);
    }
    this.#routed = true;
  }

  #renderCount() {
    const count = this.feed.count;
    if (count > 0) {
      if (!this.#badge) {
        this.#badge = h("span", { class: "badge", "data-testid": "badge", role: "img" });
        this.bell.append(this.#badge);
      } else if (Number(this.#badge.dataset.count) < count && motionAllowed()) {
        this.#badge.animate([{ transform: "scale(1.35)" }, { transform: "scale(1)" }], {
          duration: 260,
          easing: "ease-out",
        });
      }
      this.#badge.dataset.count = String(count);
      setText(this.#badge, count > 99 ? "99+" : String(count));
      this.#badge.setAttribute("aria-label", tasksLabel(count));
      this.bellLabel.hidden = true;
    } else if (this.#badge) {
      this.#badge.remove();
      this.#badge = null;
      this.bellLabel.hidden = false;
    }
    this.#applyTitle();
  }

  /** The current view's name in the tab title, after the count: "(3) Activities · Taskbell". */
  setPageName(name) {
    this.pageName = name;
    this.#applyTitle();
  }

  #applyTitle() {
    const count = this.feed.count;
    document.title = `${count > 0 ? `(${count}) ` : ""}${this.pageName ? `${this.pageName} · ` : ""}Taskbell`;
  }

  connection(state, stopReason) {
    this.conn.dataset.state = state;
    setText(this.conn.querySelector(".conn__text"), t(CONN_TEXT[state]));
    this.conn.title =
      state === ConnState.LIVE
        ? t("conn.liveHint")
        : state === ConnState.RECONNECTING
          ? t("conn.reconnectingHint")
          : "";
    this.app.dataset.conn = state;
    if (state === ConnState.STOPPED && stopReason) {
      this.banner.replaceChildren(
        icon("alert"),
        h("span", {}, t(stopReason === "revoked" ? "conn.revoked" : "conn.ended")),
      );
      this.banner.hidden = false;
    } else {
      this.banner.hidden = true;
    }
  }

  #renderWho(demo) {
    const who = this.app.querySelector("#who");
    const user = this.session.user ?? "?";
    const parts = [
      h("span", { class: "avatar avatar--sm", "aria-hidden": "true" }, user.charAt(0).toUpperCase()),
      h("span", { class: "who__name", "data-testid": "who" }, user),
      demo
        ? h(
            "button",
            {
              class: "btn btn--sm btn--quiet who__switch",
              type: "button",
              "data-testid": "switch-user",
              onclick: () => {
                this.session.signOut();
                window.location.reload();
              },
            },
            t("who.switch"),
          )
        : null,
    ];
    who.replaceChildren(...parts.filter(Boolean));
  }

  #renderDemoControls() {
    const box = this.app.querySelector("#demo-controls");
    box.replaceChildren(
      h("span", { class: "demo-pill" }, t("demo.pill")),
      h(
        "button",
        { class: "btn btn--sm btn--accent", type: "button", "data-action": "start-demo", "data-testid": "demo-start" },
        icon("play"),
        h("span", { class: "demo-controls__label" }, t("demo.start")),
      ),
    );
    box.hidden = false;
  }

  async #startDemo(button) {
    if (button.getAttribute("aria-busy") === "true") return;
    button.setAttribute("aria-busy", "true");
    try {
      const started = await this.api.startDemoProcess();
      this.toasts.show(t("demo.started", { n: started.taskIds.length }));
    } catch (err) {
      this.toasts.show(t("demo.failed", { message: err.message }), { tone: "error" });
    } finally {
      button.removeAttribute("aria-busy");
    }
  }
}
