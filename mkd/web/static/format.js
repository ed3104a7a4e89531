// Numbers as operators write them: CPU lists as ranges, sizes in binary units, addresses in hex.

import { ApiError } from "./api.js";

export const MiB = 1024 * 1024;

export function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return "—";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  // Exact while the number stays short (3328 MiB, not 3.3 GiB): operators compare these with
  // what they asked for.
  while (value >= 1024 && unit < units.length - 1 && value % 1024 === 0) {
    value /= 1024;
    unit += 1;
  }
  if (value < 100000) return `${value} ${units[unit]}`;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

// [2,3,4,8] -> "2-4,8"
export function formatCpus(cpus) {
  if (!cpus || cpus.length === 0) return "none";
  const sorted = [...cpus].sort((a, b) => a - b);
  const ranges = [];
  let first = sorted[0];
  let last = first;
  for (const cpu of sorted.slice(1)) {
    if (cpu === last + 1) {
      last = cpu;
      continue;
    }
    ranges.push(first === last ? `${first}` : `${first}-${last}`);
    first = last = cpu;
  }
  ranges.push(first === last ? `${first}` : `${first}-${last}`);
  return ranges.join(",");
}

// "2-4,8" -> [2,3,4,8]; throws ApiError-shaped problems so the message area can show them.
export function parseCpus(text) {
  const cpus = [];
  for (const part of text.split(",").map((p) => p.trim()).filter(Boolean)) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(part);
    if (!match) throw new ApiError({ title: "Invalid CPU list", detail: `${JSON.stringify(part)} is not a CPU id or range` });
    const from = Number(match[1]);
    const to = match[2] === undefined ? from : Number(match[2]);
    if (to < from || to - from > 8192) throw new ApiError({ title: "Invalid CPU list", detail: `bad range ${part}` });
    for (let cpu = from; cpu <= to; cpu += 1) cpus.push(cpu);
  }
  return cpus;
}

export function hex(value) {
  return `0x${value.toString(16)}`;
}

// "0x1_0000_0000", "4294967296" -> 4294967296; "" -> null. Exact integers only.
export function parseInteger(text, what) {
  const cleaned = text.trim().replace(/_/g, "");
  if (!cleaned) return null;
  let value = NaN;
  if (/^0x[0-9a-f]+$/i.test(cleaned)) value = parseInt(cleaned.slice(2), 16);
  else if (/^\d+$/.test(cleaned)) value = Number(cleaned);
  if (!Number.isSafeInteger(value)) {
    throw new ApiError({ title: `Invalid ${what}`, detail: `${JSON.stringify(text.trim())} is not a decimal or 0x hexadecimal integer` });
  }
  return value;
}

// "256" MiB -> bytes; fractions of a MiB are kept to the byte.
export function parseMiB(text, what) {
  const mib = Number(String(text).trim());
  if (String(text).trim() === "" || !Number.isFinite(mib) || mib < 0) {
    throw new ApiError({ title: `Invalid ${what}`, detail: `${JSON.stringify(String(text))} is not a size in MiB` });
  }
  return Math.round(mib * MiB);
}

export function mibOf(bytes) {
  return String(bytes / MiB); // exact for whole MiB, else a fraction that parseMiB rounds back
}
