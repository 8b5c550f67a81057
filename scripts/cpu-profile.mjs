// Samples the worker's CPU under `wrangler dev` through its DevTools inspector (V8's sampling
// profiler; the WebAssembly keeps its function names, see scripts/wasm-names.mjs) while load
// runs, then prints where the time went: self time per function and the inclusive time of the
// functions that matter, heaviest first. Writes the raw profile for Chrome's DevTools too.
//
// Usage: node scripts/cpu-profile.mjs [--port 9229] [--seconds 10] [--out target/cpu.cpuprofile]
//        [--top 40] [--match REGEX]...
// Start `wrangler dev --inspector-port PORT` first, then this, then the load (or the load first:
// only the seconds while this samples count). Node 22 (global WebSocket).
import { writeFileSync } from "node:fs";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const port = Number(opt("port", "9229"));
const seconds = Number(opt("seconds", "10"));
const out = opt("out", "target/cpu.cpuprofile");
const top = Number(opt("top", "40"));
const matches = args.flatMap((a, i) => (a === "--match" ? [new RegExp(args[i + 1])] : []));

const targets = await (await fetch(`http://127.0.0.1:${port}/json`)).json();
if (!targets.length) {
  console.error("cpu-profile: no inspector target");
  process.exit(2);
}
// wrangler's inspector proxy wants a local Origin (Node's WebSocket sends a User-Agent).
const ws = new WebSocket(targets[0].webSocketDebuggerUrl, { headers: { origin: "http://localhost" } });
await new Promise((ok, fail) => {
  ws.onopen = ok;
  ws.onerror = fail;
});
let next = 0;
const pending = new Map();
ws.onmessage = (m) => {
  const d = JSON.parse(m.data);
  if (d.id && pending.has(d.id)) {
    pending.get(d.id)(d);
    pending.delete(d.id);
  }
};
const send = (method, params = {}) =>
  new Promise((ok) => {
    const id = ++next;
    pending.set(id, ok);
    ws.send(JSON.stringify({ id, method, params }));
  });

await send("Profiler.enable");
await send("Profiler.setSamplingInterval", { interval: 100 });
await send("Profiler.start");
console.error(`cpu-profile: sampling for ${seconds} s`);
await new Promise((r) => setTimeout(r, seconds * 1000));
const stopped = await send("Profiler.stop");
ws.close();
const profile = stopped.result?.profile;
if (!profile) {
  console.error("cpu-profile: no profile", JSON.stringify(stopped).slice(0, 300));
  process.exit(2);
}
writeFileSync(out, JSON.stringify(profile));

// Time per sample: the profile's span over its samples.
const span = (profile.endTime - profile.startTime) / 1000; // ms
const nSamples = profile.samples.length;
const msPer = span / Math.max(1, nSamples);
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const hits = new Map();
for (const s of profile.samples) hits.set(s, (hits.get(s) ?? 0) + 1);
const label = (n) => {
  const f = n.callFrame;
  const name = f.functionName || "(anonymous)";
  const file = f.url ? f.url.split("/").pop() : "";
  return file && !name.startsWith("(") ? `${name} [${file}]` : name;
};
const self = new Map();
const incl = new Map();
let idle = 0;
for (const [id, count] of hits) {
  const n = byId.get(id);
  const l = label(n);
  if (l === "(idle)" || l === "(program)" || l === "(garbage collector)") {
    if (l === "(idle)") idle += count;
  }
  self.set(l, (self.get(l) ?? 0) + count);
  // Inclusive: once per distinct label on the stack.
  const seen = new Set();
  for (let cur = id; cur !== undefined; cur = parent.get(cur)) {
    const cl = label(byId.get(cur));
    if (!seen.has(cl)) {
      seen.add(cl);
      incl.set(cl, (incl.get(cl) ?? 0) + count);
    }
  }
}
const busy = nSamples - idle;
const fmt = (c) => `${(c * msPer).toFixed(1).padStart(9)} ms ${((100 * c) / Math.max(1, busy)).toFixed(1).padStart(5)} %`;
console.log(`span ${span.toFixed(0)} ms, ${nSamples} samples, busy ${(busy * msPer).toFixed(0)} ms (idle excluded from %)`);
console.log(`\n== self time, top ${top} ==`);
for (const [l, c] of [...self].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${fmt(c)}  ${l}`);
console.log(`\n== inclusive time, top ${top} ==`);
for (const [l, c] of [...incl].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${fmt(c)}  ${l}`);
for (const re of matches) {
  console.log(`\n== inclusive, matching ${re} ==`);
  for (const [l, c] of [...incl].filter(([l]) => re.test(l)).sort((a, b) => b[1] - a[1]).slice(0, top))
    console.log(`${fmt(c)}  ${l}`);
}
