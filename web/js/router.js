/**
 * Hash routes: `#/` (overview + process tasks), `#/activities[?status=...]`,
 * `#/records/{entity}/{id}`, `#/settings` (notification preferences),
 * `#/processes[?status=...&period=...]` (process admins). Anything else is the overview.
 */

export function parseRoute(hash = window.location.hash) {
  const raw = hash.replace(/^#/, "") || "/";
  const [path, query = ""] = raw.split("?", 2);
  const params = new URLSearchParams(query);
  const parts = path.split("/").filter(Boolean);
  try {
    if (parts[0] === "activities" && parts.length === 1) return { name: "activities", params };
    if (parts[0] === "settings" && parts.length === 1) return { name: "settings", params };
    if (parts[0] === "processes" && parts.length === 1) return { name: "processes", params };
    if (parts[0] === "records" && parts.length === 3) {
      return { name: "record", params, entity: decodeURIComponent(parts[1]), id: decodeURIComponent(parts[2]) };
    }
  } catch {
    /* a malformed %-escape: fall through to the overview */
  }
  return { name: "home", params };
}

/** `fn(route)` now and on every hash change. */
export function onRoute(fn) {
  window.addEventListener("hashchange", () => fn(parseRoute()));
  fn(parseRoute());
}
