/**
 * Web Push registration: once the person has allowed notifications, register the
 * service worker (/sw.js) and store this browser's push subscription with the server,
 * so new tasks reach them with no panel open.
 *
 * The panel's one hook: call `registerPush({ token: () => session.token })` right after
 * `Notification.requestPermission()` answers "granted", and on each start when the
 * permission is already "granted" (a subscription that changed keys is replaced).
 * Resolves to "registered", "unsupported", "not-granted", "disabled" (the server has no
 * VAPID keys) or "failed"; it never throws.
 */

export async function registerPush({ token, base = "/api/v1", workerUrl = "/sw.js" }) {
  if (!("serviceWorker" in navigator) || !("PushManager" in window) || !("Notification" in window)) {
    return "unsupported";
  }
  if (window.Notification.permission !== "granted") return "not-granted";
  try {
    const config = await (await fetch(`${base}/push/config`, { cache: "no-store" })).json();
    if (config?.enabled !== true || typeof config.public_key !== "string") return "disabled";
    const key = decodeKey(config.public_key);
    const registration = await navigator.serviceWorker.register(workerUrl, { scope: "/" });
    await navigator.serviceWorker.ready;
    let subscription = await registration.pushManager.getSubscription();
    if (subscription && !sameKey(subscription.options.applicationServerKey, key)) {
      await subscription.unsubscribe(); // the server's VAPID key changed
      subscription = null;
    }
    subscription ??= await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    const response = await fetch(`${base}/me/push-subscriptions`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Authorization: `Bearer ${token()}` },
      body: JSON.stringify(subscription.toJSON()),
    });
    return response.ok ? "registered" : "failed";
  } catch {
    return "failed";
  }
}

function decodeKey(base64url) {
  const base64 = (base64url + "=".repeat((4 - (base64url.length % 4)) % 4)).replace(/-/g, "+").replace(/_/g, "/");
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

function sameKey(buffer, key) {
  if (!buffer) return false;
  const a = new Uint8Array(buffer);
  return a.length === key.length && a.every((byte, i) => byte === key[i]);
}
