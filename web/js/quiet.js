/**
 * Whether the panel's own notifications (raised by notify.js while the tab is hidden)
 * may interrupt the person now: their preferences (docs/protocol.md, "Notification
 * preferences") read with the server's rule for the `push` channel, the browser's own
 * notifications (the service worker's Web Push ones share their tags).
 *
 * In order: the push channel switched off, or the task's process muted → silent; in the
 * quiet hours (a `[start, end)` window of the wall clock in the person's zone, wrapping
 * past midnight when start > end) → silent unless the task is `urgent`. The server's copy
 * is server/preferences.py, the bridge's bridge/quiet.py.
 */

const minuteOf = (hhmm) => Number(hhmm.slice(0, 2)) * 60 + Number(hhmm.slice(3, 5));

/** The minute of the day that the wall clock of `tz` shows at `now`; null for an unknown zone. */
export function wallMinute(now, tz) {
  let parts;
  try {
    parts = new Intl.DateTimeFormat("en-GB", {
      timeZone: tz,
      hour: "2-digit",
      minute: "2-digit",
      hourCycle: "h23",
    }).formatToParts(now);
  } catch {
    return null;
  }
  const part = (type) => Number(parts.find((p) => p.type === type)?.value);
  return part("hour") * 60 + part("minute");
}

/** Why `task` may not interrupt at `now` ("channel" | "muted" | "quiet"), or null when it may. */
export function silenced(prefs, task, now = new Date()) {
  if (!prefs.channels.push) return "channel";
  if (task.process?.name && prefs.mutedProcesses.includes(task.process.name)) return "muted";
  const quiet = prefs.quietHours;
  if (quiet && task.priority !== "urgent") {
    const at = wallMinute(now, quiet.tz);
    const start = minuteOf(quiet.start);
    const end = minuteOf(quiet.end);
    const inside = start < end ? at >= start && at < end : at >= start || at < end;
    if (at !== null && inside) return "quiet";
  }
  return null;
}

/**
 * The person's preferences as last read from the server: at start, whenever the tab is
 * hidden (when notify.js may raise something) and after the settings view saved. A read
 * that fails keeps the last known (none yet: notify, as before preferences existed).
 */
export class PreferenceWatch {
  #prefs = null;

  constructor({ api }) {
    this.api = api;
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "hidden") void this.refresh();
    });
    void this.refresh();
  }

  async refresh() {
    try {
      this.#prefs = await this.api.preferences();
    } catch {
      // Keep what we had: a lost read must not silence nor wake anyone by itself.
    }
  }

  /** Set from an answer already in hand (the settings view's save). */
  set(prefs) {
    this.#prefs = prefs;
  }

  silenced(task, now = new Date()) {
    return this.#prefs ? silenced(this.#prefs, task, now) : null;
  }
}
