// The playground in a real headless Chromium (Debian's `chromium`, driven by playwright-core):
// clicks through flow B (photo → concepts → pick one → model → refine), flow A (sketch → model)
// and text → model against a running worker and local stack, checks that the viewer loaded each
// model (`<model-viewer>`'s `load` event), that refused input shows the API's own message, the
// page's security headers, keyboard reachability, a phone-width layout and the GLB download, and
// saves a screenshot of each finished flow. Started by the end-to-end suite
// (tests/e2e/tests/playground.rs), which provides:
//
//   PLAYGROUND_URL          the worker, e.g. http://127.0.0.1:8787
//   PLAYGROUND_TOKEN        a user's access token (pasted into the page as a person would)
//   PLAYGROUND_FORBIDDEN    an input URL in another user's folder (the API refuses it)
//   PLAYGROUND_PHOTO, PLAYGROUND_SKETCH   image files to upload
//   PLAYGROUND_OUT          where the screenshots go (target/playground)
//   PLAYGROUND_NONE_URL     optional: a worker with AUTH_MODE=none (its page must say so)
//   CHROMIUM                the browser (default /usr/bin/chromium)
//
// Prints one line per check and ends with "playground: N passed, M failed"; exit status 1 on
// any failure.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const BASE = env('PLAYGROUND_URL').replace(/\/$/, '');
const TOKEN = env('PLAYGROUND_TOKEN');
const FORBIDDEN = env('PLAYGROUND_FORBIDDEN');
const PHOTO = env('PLAYGROUND_PHOTO');
const SKETCH = env('PLAYGROUND_SKETCH');
const OUT = env('PLAYGROUND_OUT', 'target/playground');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const STEP_TIMEOUT = 90_000;

let passed = 0;
let failed = 0;
const t0 = Date.now();
function ok(cond, what, detail = '') {
  const s = ((Date.now() - t0) / 1000).toFixed(1).padStart(5);
  if (cond) {
    passed += 1;
    console.log(`${s}s ok    ${what}`);
  } else {
    failed += 1;
    console.log(`${s}s FAIL  ${what}${detail ? `: ${detail}` : ''}`);
  }
  return cond;
}

async function apiMessage(endpoint, body) {
  const r = await fetch(`${BASE}/generate/${endpoint}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const j = await r.json();
  return { status: r.status, code: j?.error?.code, message: j?.error?.message, details: j?.error?.details ?? [] };
}

mkdirSync(OUT, { recursive: true });
const browser = await chromium.launch({
  executablePath: CHROMIUM,
  headless: true,
  // Root in a container: no sandbox. WebGL through SwiftShader (no GPU here).
  args: ['--no-sandbox', '--use-angle=swiftshader', '--enable-unsafe-swiftshader', '--ignore-gpu-blocklist'],
});
const problems = [];
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 1000 }, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(STEP_TIMEOUT);
  await page.addInitScript(() => {
    window.__csp = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
    });
  });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    // The refusals this test provokes on purpose are logged by Chromium as failed loads.
    const expected = m.text().includes('status of 422');
    if (m.type() === 'error' && !expected) problems.push(`console error: ${m.text()}`);
  });

  // ---------------------------------------------------------------- the page and its headers
  const resp = await page.goto(`${BASE}/`);
  const headers = resp?.headers() ?? {};
  const cfg = await (await fetch(`${BASE}/playground/config.json`)).json();
  ok(resp?.status() === 200, 'GET / is 200', String(resp?.status()));
  const csp = headers['content-security-policy'] ?? '';
  ok(
    csp.includes("default-src 'none'") && csp.includes("script-src 'self'") && csp.includes(cfg.supabase_url),
    'the page has a Content-Security-Policy naming only itself and the Supabase origin',
    csp,
  );
  ok(headers['x-content-type-options'] === 'nosniff', 'the page has X-Content-Type-Options: nosniff');
  const js = await fetch(`${BASE}/app.js`);
  ok(
    js.status === 200 && js.headers.get('x-content-type-options') === 'nosniff',
    'assets carry the _headers file (app.js: nosniff)',
    `${js.status} ${js.headers.get('x-content-type-options')}`,
  );
  ok(!JSON.stringify(cfg).includes('service'), 'config.json holds no service key', JSON.stringify(cfg));
  await page.waitForSelector('body[data-ready="true"]');
  ok(await page.locator('#mode').isHidden(), 'no AUTH_MODE=none banner (the worker verifies tokens)');

  // ---------------------------------------------------------------- sign in with a pasted token
  await page.fill('#token', TOKEN);
  await page.click('#use-token');
  await page.waitForFunction(() => document.querySelector('#who')?.textContent?.includes('Signed in'));
  const sub = JSON.parse(Buffer.from(TOKEN.split('.')[1], 'base64url').toString()).sub;
  ok((await page.textContent('#who')).includes(sub), 'the pasted token signs the page in as its user');

  // ---------------------------------------------------------------- refused input, in the API's words
  const refusedUrl = await apiMessage('image-to-model', {
    task_id: `play-probe-${Date.now()}`,
    input_image_asset_urls: [FORBIDDEN],
  });
  await page.fill('#input-url', FORBIDDEN);
  await page.check('input[name="direct-kind"][value="photo"]');
  await page.click('#run-direct');
  await page.waitForSelector('#error:not([hidden])');
  const shown = await page.textContent('#error');
  ok(
    refusedUrl.status === 422 && shown.includes(refusedUrl.message),
    "another user's input URL is refused with the API's message",
    `API ${refusedUrl.status} ${refusedUrl.message}; page: ${shown}`,
  );

  // ---------------------------------------------------------------- upload a photo
  await page.check('input[name="kind"][value="photo"]');
  await page.setInputFiles('#file', PHOTO);
  await page.click('#upload');
  await page.waitForFunction(() => document.querySelector('#upload-status')?.textContent?.startsWith('Uploaded'));
  const photoUrl = await page.inputValue('#input-url');
  ok(
    photoUrl.startsWith(`${cfg.supabase_url}/storage/v1/object/authenticated/${cfg.input_bucket}/${sub}/`),
    "the photo is uploaded to the user's own folder of the inputs bucket",
    photoUrl,
  );

  // ---------------------------------------------------------------- an invalid field, in the API's words
  await page.fill('#concept-n', '11');
  await page.click('#run-concepts');
  await page.waitForFunction(() => document.querySelector('#error')?.textContent?.includes('n:'));
  const invalid = await apiMessage('image-to-image', {
    task_id: `play-probe-n-${Date.now()}`,
    input_image_asset_url: photoUrl,
    prompt: 'x',
    n: 11,
  });
  const nDetail = invalid.details.find((d) => d.field === 'n');
  const shownN = await page.textContent('#error');
  ok(
    invalid.status === 422 && nDetail && shownN.includes(invalid.message) && shownN.includes(`n: ${nDetail.message}`),
    'n = 11 is refused with the API message and its field detail',
    `API ${JSON.stringify(invalid)}; page: ${shownN}`,
  );

  // Each finished model makes the viewer fire `load`; the page counts them in data-loads.
  const loads = () => page.evaluate(() => Number(document.querySelector('#viewer')?.dataset.loads ?? 0));
  const waitModel = async (what, before) => {
    await page.waitForFunction((n) => Number(document.querySelector('#viewer')?.dataset.loads ?? 0) > n, before, {
      timeout: STEP_TIMEOUT,
    });
    const loaded = await page.evaluate(() => document.querySelector('#viewer')?.loaded === true);
    ok(loaded, `${what}: <model-viewer> fired load and reports loaded`);
  };
  const waitStep = async (step, what) => {
    await page.waitForFunction(
      (s) => ['complete', 'failed'].includes(document.querySelector(`#steps li[data-step="${s}"]`)?.dataset.status ?? ''),
      step,
      { timeout: STEP_TIMEOUT },
    );
    const status = await page.getAttribute(`#steps li[data-step="${step}"]`, 'data-status');
    ok(status === 'complete', `${what}: ${step} step complete`, `${status}: ${await page.textContent('#error')}`);
  };
  const shoot = async (name) => {
    await page.locator('#viewer').scrollIntoViewIfNeeded();
    await page.waitForTimeout(1000); // a little turning
    await page.screenshot({ path: join(OUT, name), fullPage: true });
    console.log(`        screenshot ${join(OUT, name)}`);
  };

  // ---------------------------------------------------------------- flow B: concepts → model → refine
  await page.fill('#concept-n', '3');
  await page.fill('#concept-style', 'soft clay');
  await page.selectOption('#concept-background', 'opaque');
  await page.click('#run-concepts');
  await waitStep('concepts', 'flow B');
  await page.waitForFunction(() => document.querySelectorAll('#concepts button').length === 3);
  ok(true, 'flow B: 3 concept images shown');
  ok(await page.locator('#error').isHidden(), 'flow B: the earlier error is gone');
  // Pick the second concept with the keyboard: focus is on the first; Tab, then Space.
  await page.keyboard.press('Tab');
  await page.keyboard.press('Space');
  ok(
    (await page.getAttribute('#concepts button:nth-child(2)', 'aria-pressed')) === 'true',
    'flow B: the second concept is chosen with the keyboard',
  );
  let before = await loads();
  await page.click('#run-concept-model');
  await waitStep('model', 'flow B');
  await waitModel('flow B model', before);
  before = await loads();
  await page.click('#run-refine');
  await waitStep('refine', 'flow B');
  await waitModel('flow B refine', before);
  await shoot('flow-b-concepts-model-refine.png');

  // ---------------------------------------------------------------- download the GLB
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const glbPath = join(OUT, 'downloaded.glb');
  await download.saveAs(glbPath);
  const glb = readFileSync(glbPath);
  ok(
    glb.subarray(0, 4).toString() === 'glTF' && glb.readUInt32LE(8) === glb.length,
    'Download GLB saves the model (a whole glTF binary)',
    `${download.suggestedFilename()} ${glb.length} bytes`,
  );

  // ---------------------------------------------------------------- flow A: sketch → model
  await page.check('input[name="kind"][value="sketch"]');
  await page.setInputFiles('#file', SKETCH);
  await page.click('#upload');
  await page.waitForFunction((prev) => {
    const v = document.querySelector('#input-url')?.value;
    return v && v !== prev && document.querySelector('#upload-status')?.textContent?.startsWith('Uploaded');
  }, photoUrl);
  ok(
    await page.isChecked('input[name="direct-kind"][value="sketch"]'),
    'flow A: uploading a sketch selects sketch-to-model',
  );
  before = await loads();
  await page.click('#run-direct');
  await waitStep('model', 'flow A sketch');
  await waitModel('flow A sketch', before);
  await shoot('flow-a-sketch-to-model.png');

  // ---------------------------------------------------------------- text → model, by keyboard
  await page.fill('#text-prompt', 'a small red chair');
  await page.focus('#text-prompt');
  before = await loads();
  await page.keyboard.press('Enter');
  await waitStep('model', 'text to model');
  await waitModel('text to model', before);
  await shoot('text-to-model.png');

  // ---------------------------------------------------------------- keyboard: every control is reachable
  await page.evaluate(() => document.activeElement instanceof HTMLElement && document.activeElement.blur());
  await page.focus('#email');
  const order = [];
  for (let i = 0; i < 60; i += 1) {
    const id = await page.evaluate(() => {
      const a = document.activeElement;
      return a ? `${a.tagName.toLowerCase()}#${a.id || a.getAttribute('name') || ''}` : '';
    });
    order.push(id);
    if (id === 'button#download') break;
    await page.keyboard.press('Tab');
  }
  const want = ['input#email', 'button#signin', 'textarea#token', 'input#file', 'input#input-url', 'button#run-concepts', 'button#run-direct', 'input#text-prompt', 'button#run-text', 'button#download'];
  const positions = want.map((w) => order.indexOf(w));
  ok(
    positions.every((p, i) => p >= 0 && (i === 0 || p > positions[i - 1])),
    'Tab reaches every control in reading order',
    order.join(' → '),
  );
  ok(
    order.every((id) => /^(input|button|select|textarea|a|model-viewer)#/.test(id)),
    'only real controls take focus (no clickable divs)',
    order.join(' '),
  );
  const labelled = await page.evaluate(() =>
    [...document.querySelectorAll('input:not([type=radio]), select, textarea')]
      .filter((el) => !(el.labels && el.labels.length))
      .map((el) => el.id),
  );
  ok(labelled.length === 0, 'every field has a label', labelled.join(', '));

  // ---------------------------------------------------------------- phone width
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(500);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  const wide = await page.evaluate(() =>
    [...document.querySelectorAll('body *')]
      .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 1)
      .map((el) => `${el.tagName.toLowerCase()}#${el.id}.${el.className}`)
      .slice(0, 8),
  );
  ok(overflow <= 0, 'at 390 px wide nothing overflows sideways', `${overflow}px: ${wide.join(' ')}`);
  await page.locator('#viewer').scrollIntoViewIfNeeded();
  await page.waitForTimeout(1500); // the viewer renders again at its new size
  await page.screenshot({ path: join(OUT, 'phone-width.png') });
  console.log(`        screenshot ${join(OUT, 'phone-width.png')}`);

  // ---------------------------------------------------------------- a worker with AUTH_MODE=none says so
  const none = process.env.PLAYGROUND_NONE_URL;
  if (none) {
    const other = await context.newPage();
    await other.goto(`${none.replace(/\/$/, '')}/`);
    await other.waitForSelector('body[data-ready="true"]');
    const banner = other.locator('#mode');
    const text = (await banner.textContent()) ?? '';
    ok(
      (await banner.isVisible()) && text.includes('AUTH_MODE=none') && text.includes('local development only'),
      'a worker with AUTH_MODE=none says so in a banner',
      text,
    );
    await other.close();
  }

  const csps = await page.evaluate(() => window.__csp);
  ok(csps.length === 0, 'no Content-Security-Policy violation', csps.join('; '));
  ok(problems.length === 0, 'no page or console error', problems.join('; '));
} catch (e) {
  ok(false, 'the run went through', e?.stack ?? String(e));
} finally {
  await browser.close();
}
console.log(`playground: ${passed} passed, ${failed} failed (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
process.exit(failed === 0 ? 0 : 1);
