/**
 * Start-up: take the token out of the address bar, learn whether this is a demo, find out
 * who the person is (token, demo picker, or the "needs a token" note), then wire the
 * feed, the connection and the views together and follow the hash routes.
 */

import { Actions } from "./actions.js";
import { Api } from "./api.js";
import { Connection, ConnState } from "./connection.js";
import { Announcer, Toasts } from "./dom.js";
import { Feed } from "./feed.js";
import { followBell } from "./framed.js";
import { Handoff } from "./handoff.js";
import { setLocale, t, translateDom, wantedLocale } from "./i18n.js";
import { hydrateIcons } from "./icons.js";
import { DesktopNotifier } from "./notify.js";
import { registerPush } from "./push.js";
import { PreferenceWatch } from "./quiet.js";
import { onRoute } from "./router.js";
import { Seen } from "./seen.js";
import { Session, takeTokenFromFragment } from "./session.js";
import { startRelativeClock } from "./time.js";
import { ActivitiesView } from "./views/activities.js";
import { pickDemoUser, showNeedsToken, showTokenRefused } from "./views/gate.js";
import { HomeView } from "./views/home.js";
import { PanelView } from "./views/panel.js";
import { PostponeMenu } from "./views/postpone.js";
import { ProcessesView } from "./views/processes.js";
import { RecordView } from "./views/record.js";
import { SettingsView } from "./views/settings.js";
import { Shell } from "./views/shell.js";

const fragmentToken = takeTokenFromFragment();
followBell();

/** The person's language: the token's `locale` claim, else the browser's (i18n.js). */
function followLanguage(session) {
  setLocale(wantedLocale(session?.locale ?? null));
  translateDom(document);
}

async function boot() {
  followLanguage(null);
  const api = new Api();
  const info = await api.demoInfo();
  const session = new Session({ demo: info.demo, api });
  api.session = session;
  const gate = document.getElementById("gate");

  // A host application may hand over a token at any time (also while a gate shows).
  session.listenToHost();
  const usableToken = () => new Promise((resolve) => session.onChange(() => session.user !== null && resolve()));
  const restored = session.restore(fragmentToken);
  followLanguage(session);
  if (!restored) {
    if (info.demo) {
      await pickDemoUser(gate, { users: info.users, session, lastUser: Session.lastDemoUser() });
    } else {
      showNeedsToken(gate);
      await usableToken();
    }
    gate.hidden = true;
    gate.replaceChildren();
  } else if (session.user === null) {
    // Not a token at all (no subject to read). Whether a readable one is still valid
    // (expiry, signature) only the server says: this computer's clock may be wrong.
    refuse({ why: "invalid", demo: info.demo, session });
    await usableToken();
    unrefuse();
  }
  start({ api, session, demo: info.demo, engine: info.engine });
}

/** The token is no good and the panel never showed anything: a page that says so (and in
 * demo mode a way to pick a person again) instead of a panel that never fills. A fresh
 * token from the host application brings the panel back (`unrefuse`). */
function refuse({ why, demo, session }) {
  document.getElementById("app").hidden = true;
  showTokenRefused(document.getElementById("gate"), {
    why,
    demo,
    onPickAgain: () => {
      session.signOut();
      window.location.reload();
    },
  });
}

function unrefuse() {
  const gate = document.getElementById("gate");
  if (gate.hidden) return;
  gate.hidden = true;
  gate.replaceChildren();
  document.getElementById("app").hidden = false;
}

function start({ api, session, demo, engine }) {
  followLanguage(session);
  const app = document.getElementById("app");
  hydrateIcons(app);
  const feed = new Feed(`user:${session.user}`);
  const announcer = new Announcer(document.querySelector("[data-testid=announcer]"));
  const toasts = new Toasts(document.getElementById("toasts"));
  const postponeMenu = new PostponeMenu(document.getElementById("postpone-menu"));
  const dialog = document.getElementById("dialog");
  dialog.addEventListener("click", (event) => {
    if (event.target === dialog) dialog.close(); // a click on the backdrop
  });

  const shell = new Shell({ app, feed, session, demo, toasts, api });
  let current = null;
  const handoff = new Handoff({ feed, toasts, announcer, open: (task) => void actions.open(task) });
  const actions = new Actions({
    api,
    toasts,
    announcer,
    handoff,
    onChanged: () => {
      current?.refresh?.();
      panel.refreshPostponed();
    },
  });
  // A decision still in its undo window is sent when the page goes away, not lost.
  window.addEventListener("pagehide", () => actions.flushPending());
  const preferences = new PreferenceWatch({ api });
  const notifier = new DesktopNotifier({
    feed,
    preferences,
    onOpen: (taskId) => {
      window.location.hash = "#/";
      shell.setPanel(true);
      panel.running.flush();
      panel.running.element(taskId)?.querySelector(".card__title")?.focus();
    },
    // Web Push reaches the person with no panel open; it never throws.
    onGranted: () => void registerPush({ token: () => session.token }),
  });
  const panel = new PanelView({ root: app, feed, api, actions, postponeMenu, notifier });
  const panelEl = document.getElementById("panel");
  const seen = new Seen({
    feed,
    api,
    root: panelEl,
    app,
    shown: () => !app.hidden && app.dataset.panel === "open" && panelEl.checkVisibility(),
  });
  announceChanges(feed, announcer);
  // The skip link must not change the hash (that is the router's): focus the list instead.
  document.querySelector(".skip-link").addEventListener("click", (event) => {
    event.preventDefault();
    shell.setPanel(true);
    panel.selectTab("running");
    document.getElementById("task-list").focus();
  });

  const views = {
    home: new HomeView({ feed, api, session, demo, engine }),
    activities: new ActivitiesView({ feed, api, actions, postponeMenu, dialog }),
    record: new RecordView({ feed, api, actions, postponeMenu, dialog }),
    settings: new SettingsView({ api, onSaved: (prefs) => preferences.set(prefs) }),
    processes: new ProcessesView({ api, dialog, toasts, announcer }),
  };
  views.record.onTitle = (title) => shell.setPageName(title);
  const main = document.getElementById("main");
  let firstRoute = true;
  onRoute((route) => {
    postponeMenu.close();
    current?.unmount();
    current = views[route.name];
    current.mount(main, route);
    shell.route(route);
    const names = {
      activities: t("page.activities"),
      processes: t("processes.title"),
      record: route.id,
      settings: t("settings.title"),
    };
    shell.setPageName(names[route.name] ?? "");
    if (!firstRoute) main.focus({ preventScroll: true });
    firstRoute = false;
    window.scrollTo(0, 0);
  });

  const scheme = window.location.protocol === "https:" ? "wss" : "ws";
  const connection = new Connection({ url: `${scheme}://${window.location.host}/ws`, feed, session });
  connection.onSeen = (msg) => seen.applied(msg);
  const conn = document.querySelector("[data-testid=conn-state]");
  connection.onState((state) => {
    shell.connection(state, connection.stopReason);
    if (state === ConnState.STOPPED && !connection.everLive) refuse({ why: connection.stopReason, demo, session });
    else if (state === ConnState.LIVE) unrefuse();
    // The state element is a role=status region itself, so screen readers hear
    // "Reconnecting…" and "Live" without a second announcement from here.
    conn.dataset.sync = connection.lastSync ?? "";
  });
  startRelativeClock(document.body);
  app.hidden = false;
  connection.start();
  // For people poking at the page from the console (and nothing else).
  window.taskbell = Object.freeze({ feed, connection, session });
}

/** New and vanished tasks, said once through the aria-live region (bursts are merged). */
function announceChanges(feed, announcer) {
  let primed = false;
  feed.subscribe(({ source, changes }) => {
    if (source === "snapshot" && !primed) {
      primed = true;
      return;
    }
    for (const { change, task, reason } of changes) {
      if (change === "added") {
        announcer.say(t("live.added", { title: task.title }), {
          group: { key: "added", many: (n) => t("live.addedMany", { n }) },
        });
      } else if (change === "removed" && (reason === "canceled" || task.status === "canceled")) {
        announcer.say(t("live.canceled", { title: task.title }), {
          group: { key: "canceled", many: (n) => t("live.canceledMany", { n }) },
        });
      } else if (change === "removed" && reason === "claimed" && `user:${task.owner}` !== feed.own) {
        announcer.say(t("live.claimed", { who: task.owner ?? t("live.someoneElse"), title: task.title }), {
          group: { key: "claimed", many: (n) => t("live.claimedMany", { n }) },
        });
      } else if (change === "removed" && reason === "reassigned") {
        announcer.say(t("live.reassigned", { title: task.title }), {
          group: { key: "reassigned", many: (n) => t("live.reassignedMany", { n }) },
        });
      }
    }
  });
}

boot().catch((err) => {
  console.error(err);
  const gate = document.getElementById("gate");
  gate.textContent = t("page.cantStart", { message: err.message });
  gate.hidden = false;
});
