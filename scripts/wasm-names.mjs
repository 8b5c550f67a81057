// Shortens the function names of a WebAssembly file's `name` section, in place: drops the
// 16-hex-digit hash of every Rust symbol (`…::h0123456789abcdef`), crate disambiguator
// (`core[0123456789abcdef]::…`) and wasm-bindgen import shim, cuts names past MAX_NAME
// characters, and keeps only the module's and the functions' names. worker-build keeps the section so that stack traces name the
// functions; they still do, with the path only. The hashes are random digits a reader cannot use,
// and compress badly: about 30 KiB of the gzipped bundle. Nothing else in the file changes, and
// the result is validated before it is written.
//
// Usage: node scripts/wasm-names.mjs build/index_bg.wasm   (run by wrangler.toml's [build])
import { readFileSync, writeFileSync } from "node:fs";

const file = process.argv[2];
if (!file) {
  console.error("usage: node scripts/wasm-names.mjs FILE.wasm");
  process.exit(2);
}
const input = readFileSync(file);

function leb(buf, at) {
  let value = 0, shift = 0, byte;
  do {
    byte = buf[at++];
    value += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [value, at];
}

function encodeLeb(n) {
  const out = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

const withLength = (body) => Buffer.concat([encodeLeb(body.length), body]);
// Longest name kept, in characters: past it a name ends in "…". Only generic arguments run this
// long (`core::ptr::drop_in_place<futures_util::…<…<…>>>`, up to 1,800 characters); the worker's own
// functions stay whole (5.5 KiB of the gzipped bundle with the two changes below).
const MAX_NAME = 128;
const shorten = (name) => {
  const short = name
    .replace(/::h[0-9a-f]{16}$/, "")
    .replace(/\[[0-9a-f]{16}\]/g, "")
    // wasm-bindgen's import shims: `…::__wbg_get_57b93e4469e51558` → `…::__wbg_get`.
    .replace(/(__wbg_\w+?)_[0-9a-f]{16}$/, "$1");
  return short.length > MAX_NAME ? `${short.slice(0, MAX_NAME)}…` : short;
};

// Subsections kept: the module's name (0) and the functions' (1), which stack traces and
// profiles show. Locals (2), tables (5), globals (7) and data segments (9) appear in neither.
const KEPT = new Set([0, 1]);

// The function-names subsection (id 1): a vector of (index, name).
function functionNames(sub) {
  let [count, at] = leb(sub, 0);
  const parts = [encodeLeb(count)];
  for (; count > 0; count--) {
    let index, len;
    [index, at] = leb(sub, at);
    [len, at] = leb(sub, at);
    const name = sub.subarray(at, at + len).toString("utf8");
    at += len;
    parts.push(encodeLeb(index), withLength(Buffer.from(shorten(name), "utf8")));
  }
  return Buffer.concat(parts);
}

function nameSection(body, at) {
  const parts = [body.subarray(0, at)];
  while (at < body.length) {
    const id = body[at];
    const [size, start] = leb(body, at + 1);
    const sub = body.subarray(start, start + size);
    if (KEPT.has(id)) {
      parts.push(Buffer.from([id]), withLength(id === 1 ? functionNames(sub) : sub));
    }
    at = start + size;
  }
  return Buffer.concat(parts);
}

if (input.readUInt32LE(0) !== 0x6d736100) {
  console.error(`${file}: not a WebAssembly file`);
  process.exit(1);
}
const sections = [input.subarray(0, 8)];
for (let at = 8; at < input.length; ) {
  const id = input[at];
  const [size, start] = leb(input, at + 1);
  let body = input.subarray(start, start + size);
  if (id === 0) {
    const [nameLen, nameAt] = leb(body, 0);
    if (body.subarray(nameAt, nameAt + nameLen).toString("utf8") === "name") {
      body = nameSection(body, nameAt + nameLen);
    }
  }
  sections.push(Buffer.from([id]), withLength(body));
  at = start + size;
}
const output = Buffer.concat(sections);
if (output.equals(input)) {
  // Already shortened (a build that reused the last one): leave the file alone.
  process.exit(0);
}
if (!WebAssembly.validate(output)) {
  console.error(`${file}: the rewritten module does not validate; left as it was`);
  process.exit(1);
}
writeFileSync(file, output);
console.log(`${file}: function names without hashes, ${input.length} → ${output.length} bytes`);
