// Numbers, sizes and times as a business user reads them.

const integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
const decimal = new Intl.NumberFormat("en-US", { maximumFractionDigits: 2 });

export function count(value) {
  return value === null || value === undefined ? "—" : integer.format(value);
}

export function number(value, digits = 2) {
  if (value === null || value === undefined || Number.isNaN(value)) return "—";
  return new Intl.NumberFormat("en-US", { maximumFractionDigits: digits }).format(value);
}

export function bytes(value) {
  if (value === null || value === undefined) return "—";
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let amount = value;
  let unit = 0;
  while (amount >= 1024 && unit < units.length - 1) {
    amount /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${integer.format(amount)} bytes` : `${decimal.format(amount)} ${units[unit]}`;
}

export function cpus(value) {
  if (value === null || value === undefined) return "—";
  return `${decimal.format(value)} ${value === 1 ? "CPU" : "CPUs"}`;
}

export function percent(part, whole) {
  if (!whole || part === null || part === undefined) return 0;
  return Math.max(0, Math.min(100, (part / whole) * 100));
}

export function time(text) {
  if (!text) return "—";
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return text;
  return date.toLocaleString("en-GB", { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

export function clock(text) {
  const date = new Date(text);
  if (Number.isNaN(date.getTime())) return text || "";
  return date.toLocaleTimeString("en-GB", { hour12: false });
}

/** Parses "512M", "2G", "1.5 GiB" or a plain number of bytes; null when not a size. */
export function parseBytes(text) {
  const match = /^\s*(\d+(?:\.\d+)?)\s*(b|bytes?|k|kib|kb|m|mib|mb|g|gib|gb|t|tib|tb)?\s*$/i.exec(String(text));
  if (!match) return null;
  const scale = { k: 1, m: 2, g: 3, t: 4 }[(match[2] || "b")[0].toLowerCase()] || 0;
  return Math.round(Number(match[1]) * 1024 ** scale);
}

/** The words for an app's state. */
export const STATE_TEXT = {
  created: "Not running",
  starting: "Starting",
  running: "Running",
  stopping: "Stopping",
  stopped: "Stopped",
  crashed: "Crashed",
  backoff: "Restarting after a crash",
};

/** What a crash reason means, for people. */
export const CRASH_TEXT = {
  exit: "The app's code ended with an error",
  signal: "The app's process was killed",
  oom: "The app ran out of memory (raise its memory quota)",
  seccomp: "The app tried something the sandbox forbids",
  protocol: "The app broke the runtime's protocol",
  heartbeat: "The app stopped responding",
  startup: "The app failed while starting",
  quota: "The app went over its grid-row quota",
  acl: "The app reads a Kafka topic its team may not use",
};
