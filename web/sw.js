/**
 * Taskbell's service worker: Web Push notifications for people with no panel open.
 *
 * Each push is one change of the person's feed (server/delivery/webpush/, `PushPayload`),
 * with the notification's words (`notification`: title, body, lang) in the person's
 * language, written by the server:
 *   task.added   → show a notification tagged with the task id (the same tag the panel's
 *                  own notifications use, so the browser keeps one per task);
 *   task.updated → replace it, if it is still shown;
 *   task.removed → close it (completed, canceled, postponed or reassigned away).
 * A click opens the task's page (or the panel). Unknown message types are ignored: a
 * newer server may send more.
 */

const PANEL_URL = "/";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

self.addEventListener("push", (event) => {
  let message = null;
  try {
    message = event.data ? event.data.json() : null;
  } catch {
    message = null;
  }
  if (!message || typeof message !== "object" || !message.task || typeof message.task.id !== "string") return;
  event.waitUntil(handle(message));
});

async function handle(message) {
  const task = message.task;
  if (typeof message.count === "number" && "setAppBadge" in self.navigator) {
    // The badge counter travels with every change.
    await (message.count > 0 ? self.navigator.setAppBadge(message.count) : self.navigator.clearAppBadge()).catch(
      () => {},
    );
  }
  switch (message.type) {
    case "task.added":
      if (await panelIsVisible()) return; // the open panel shows it already
      return show(message, true);
    case "task.updated": {
      const shown = await self.registration.getNotifications({ tag: task.id });
      if (shown.length > 0) return show(message, false);
      return;
    }
    case "task.removed":
      return close(task.id);
    default:
      return;
  }
}

async function panelIsVisible() {
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  return windows.some((client) => client.visibilityState === "visible");
}

/** The server writes the words in the person's language (`notification`); a payload without
 * them (from an older server) shows the task title and process as before. */
function show(message, fresh) {
  const task = message.task;
  const words = message.notification;
  const title = typeof words?.title === "string" ? words.title : task.title;
  const body =
    typeof words?.body === "string" ? words.body : [task.process, statusNote(task.status)].filter(Boolean).join(" · ");
  return self.registration.showNotification(title, {
    tag: task.id,
    body,
    lang: typeof words?.lang === "string" ? words.lang : "",
    renotify: fresh,
    silent: !fresh,
    timestamp: Date.now(),
    data: { taskId: task.id, url: task.url || PANEL_URL, seq: message.seq },
  });
}

function statusNote(status) {
  return status === "running" ? "" : status;
}

async function close(taskId) {
  const shown = await self.registration.getNotifications({ tag: taskId });
  for (const notification of shown) notification.close();
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  const url = event.notification.data?.url || PANEL_URL;
  event.waitUntil(open(url));
});

async function open(url) {
  const target = new URL(url, self.location.origin).href;
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  const same = windows.find((client) => client.url === target);
  if (same) return same.focus();
  return self.clients.openWindow(target);
}
