/**
 * Times as a person reads them, in their own time zone and the panel's language
 * (i18n.js): "2 min ago", "tomorrow 09:00", and the postpone presets. Pure functions of
 * (ms, now) and the language shown.
 */

import { dateFormat, has, relativeFormat, t } from "./i18n.js";

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;

const timeFmt = () => dateFormat({ hour: "2-digit", minute: "2-digit" });
const dayFmt = () => dateFormat({ weekday: "short", month: "short", day: "numeric" });
const fullFmt = () => dateFormat({ dateStyle: "full", timeStyle: "short" });

/** `n` `unit`s from now (negative: ago), in the catalogue's own words when it has them
 * (English: "5 min ago"), else as `Intl.RelativeTimeFormat` says it ("vor 5 Min."). */
function distance(key, n, unit) {
  if (has(key)) return t(key, { n: Math.abs(n) });
  return relativeFormat({ style: "short" }).format(n, unit);
}

/** "today", "tomorrow", "yesterday" in the language shown. */
const dayWord = (offset) => relativeFormat({ numeric: "auto" }).format(offset, "day");

export const timeZone = () => Intl.DateTimeFormat().resolvedOptions().timeZone || t("time.zoneUnknown");

function startOfDay(ms) {
  const d = new Date(ms);
  d.setHours(0, 0, 0, 0);
  return d.getTime();
}

/** "just now", "5 min ago", "3 h ago", "yesterday", "Mon, Nov 3". */
export function relative(ms, now = Date.now()) {
  const ago = now - ms;
  if (ago < 45_000) return t("time.justNow");
  if (ago < HOUR) return distance("time.minutesAgo", -Math.max(1, Math.round(ago / MINUTE)), "minute");
  if (ago < 12 * HOUR || startOfDay(ms) === startOfDay(now)) {
    return distance("time.hoursAgo", -Math.floor(ago / HOUR), "hour");
  }
  if (dayAfter(ms) === startOfDay(now)) return dayWord(-1);
  return dayFmt().format(ms);
}

function dayAfter(ms) {
  const d = new Date(ms);
  d.setDate(d.getDate() + 1);
  return startOfDay(d.getTime());
}

/** "today 09:00", "tomorrow 09:00", "Sat, Nov 29, 09:00": a moment in the future. */
export function when(ms, now = Date.now()) {
  const day = startOfDay(ms);
  const time = timeFmt().format(ms);
  if (day === startOfDay(now)) return t("time.dayAt", { day: dayWord(0), time });
  if (day === dayAfter(now)) return t("time.dayAt", { day: dayWord(1), time });
  return t("time.dateAt", { date: dayFmt().format(ms), time });
}

const yearFmt = () =>
  dateFormat({
    year: "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
  });

/** A moment as a wall-clock time: "14:00" today, "Thu, Dec 3, 14:00" this year, "Dec 3,
 * 2027, 14:00" in another year. */
export function absolute(ms, now = Date.now()) {
  if (startOfDay(ms) === startOfDay(now)) return timeFmt().format(ms);
  if (new Date(ms).getFullYear() !== new Date(now).getFullYear()) return yearFmt().format(ms);
  return t("time.dateAt", { date: dayFmt().format(ms), time: timeFmt().format(ms) });
}

/** How far away a future moment is: "in 5 min", "in 2 h", "in 3 days". */
function ahead(ms, now) {
  const left = ms - now;
  if (left < HOUR) return distance("time.inMinutes", Math.max(1, Math.round(left / MINUTE)), "minute");
  if (left < 36 * HOUR) return distance("time.inHours", Math.round(left / HOUR), "hour");
  const days = Math.round(left / (24 * HOUR));
  if (days < 14) return distance("time.inDays", days, "day");
  if (days < 60) return distance("time.inWeeks", Math.round(days / 7), "week");
  return distance("time.inMonths", Math.round(days / 30.44), "month");
}

/** A due time as a person reads it: "due in 2 h · 14:00", or once passed (or flagged by
 * the server's clock) "overdue since 09:00". */
export function due(ms, { overdue = false, now = Date.now() } = {}) {
  if (overdue || ms <= now) return t("time.overdueSince", { at: absolute(ms, now) });
  return t("time.due", { in: ahead(ms, now), at: absolute(ms, now) });
}

export const clock = (ms) => timeFmt().format(ms);
/** "Sat 09:00". */
export const dayClock = (ms) => t("time.dayAt", { day: dateFormat({ weekday: "short" }).format(ms), time: clock(ms) });
export const full = (ms) => fullFmt().format(ms);

/** One hour from now, to the minute. */
export function inOneHour(now = Date.now()) {
  const d = new Date(now + HOUR);
  d.setSeconds(0, 0);
  return d.getTime();
}

/** Tomorrow at 09:00 in the person's time zone. */
export function tomorrowNine(now = Date.now()) {
  const d = new Date(now);
  d.setDate(d.getDate() + 1);
  d.setHours(9, 0, 0, 0);
  return d.getTime();
}

const pad = (n) => String(n).padStart(2, "0");

/** ms → the value of an `<input type="datetime-local">` (local wall time). */
export function toLocalInput(ms) {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

/** The value of an `<input type="datetime-local">` → ms, read as the person's local time. */
export function fromLocalInput(value) {
  const m = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})/.exec(value);
  if (!m) return null;
  const [, y, mo, d, h, mi] = m.map(Number);
  return new Date(y, mo - 1, d, h, mi, 0, 0).getTime();
}

/** Refresh every `<time data-relative>` (and `data-due`) under `root` twice a minute. */
export function startRelativeClock(root) {
  const tick = () => {
    const now = Date.now();
    for (const el of root.querySelectorAll("time[data-relative]")) {
      const text = relative(Number(el.dataset.relative), now);
      if (el.textContent !== text) el.textContent = text;
    }
    for (const el of root.querySelectorAll("[data-due]")) {
      const text = due(Number(el.dataset.due), { overdue: el.dataset.overdue === "true", now });
      if (el.textContent !== text) el.textContent = text;
    }
  };
  window.setInterval(tick, 30_000);
  return tick;
}
