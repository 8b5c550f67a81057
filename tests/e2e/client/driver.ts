/**
 * Runs docs/examples/client.ts for real against the local stack (worker, Supabase-compatible
 * gateway with Storage and PostgREST, provider fakes), as an app would: tests/e2e/tests/client.rs
 * starts it with Node 22 (type stripping) and checks what it prints (one JSON object, last line).
 *
 * It runs flow A from an image and from text, flow B (concepts → pick → model), a cancel, a
 * resume after a simulated reload, five images (refused), a repeated submit (200), and a webhook
 * delivered by the worker to a local server that hands it to the Edge Function's handler
 * (docs/examples/edge-function/handler.ts) — first tampered, then as sent.
 *
 * Settings (environment): BFF_URL, SUPABASE_URL, ANON_KEY, SERVICE_KEY, USER_TOKEN, INPUT_BUCKET,
 * WEBHOOK_SECRET, PNG_HEX (an input image), NONCE (makes the fakes' directives unique).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createClient } from '@supabase/supabase-js';
import {
  MakeIt3D,
  StepFailedError,
  flowA,
  flowB,
  resume,
  type StatusResponse,
} from '../../../docs/examples/client.ts';
import { createHandler } from '../../../docs/examples/edge-function/handler.ts';

const env = (name: string): string => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const BFF_URL = env('BFF_URL');
const SUPABASE_URL = env('SUPABASE_URL');
const ANON_KEY = env('ANON_KEY');
const SERVICE_KEY = env('SERVICE_KEY');
const USER_TOKEN = env('USER_TOKEN');
const NONCE = env('NONCE');

// Every request the client makes to the worker, to prove it never polls.
const requests: { method: string; path: string; at: number }[] = [];
const realFetch = globalThis.fetch;
globalThis.fetch = (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
  const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
  if (url.startsWith(BFF_URL)) {
    requests.push({ method: init?.method ?? 'GET', path: new URL(url).pathname, at: Date.now() });
  }
  return realFetch(input, init);
};

/** A client as a page would make it: the user's own token, the project's anon key. */
function newApp(): MakeIt3D {
  const supabase = createClient(SUPABASE_URL, ANON_KEY, { accessToken: async () => USER_TOKEN });
  return new MakeIt3D(
    {
      bffUrl: BFF_URL,
      supabaseUrl: SUPABASE_URL,
      supabaseAnonKey: ANON_KEY,
      inputBucket: env('INPUT_BUCKET'),
      accessToken: async () => USER_TOKEN,
    },
    // The example's typed client; this one is untyped, which is all the same at run time.
    supabase as unknown as MakeIt3D['supabase'],
  );
}

const png = (): Blob => new Blob([Buffer.from(env('PNG_HEX'), 'hex')], { type: 'image/png' });
const views = (into: StatusResponse[]) => (s: StatusResponse) => into.push(s);
const brief = (v: StatusResponse[]) => v.map((s) => [s.step, s.status, s.progress]);

async function imageFlow() {
  const seen: StatusResponse[] = [];
  let created: boolean | undefined;
  const r = await flowA(newApp(), { kind: 'image', images: [png()] }, {
    onProgress: views(seen),
    onSubmitted: (s) => (created = s.created),
  });
  return { taskId: r.taskId, created, status: r.model.status, modelUrl: r.modelUrl, views: brief(seen) };
}

async function textFlow() {
  const app = newApp();
  const seen: StatusResponse[] = [];
  let created: boolean | undefined;
  const prompt = `a small red armchair [[fake:nonce=${NONCE}t]]`;
  const r = await flowA(app, { kind: 'text', prompt }, {
    onProgress: views(seen),
    onSubmitted: (s) => (created = s.created),
    model: { texture_quality: 'standard' },
  });
  // The same request again: a repeat, nothing new (200).
  const again = await app.textToModel({ task_id: r.taskId, prompt, texture_quality: 'standard' });
  return {
    taskId: r.taskId,
    created,
    repeatCreated: again.created,
    status: r.model.status,
    modelUrl: r.modelUrl,
    views: brief(seen),
  };
}

async function conceptsFlow() {
  const seen: StatusResponse[] = [];
  const r = await flowB(newApp(), png(), `a cute vinyl toy [[fake:nonce=${NONCE}b]]`, async (c) => c[c.length - 1]!, {
    onProgress: views(seen),
    concepts: { n: 2 },
  });
  return {
    taskId: r.taskId,
    concepts: r.concepts.map((c) => c.displayUrl),
    modelUrl: r.modelUrl,
    steps: [...new Set(seen.map((s) => s.step))],
  };
}

async function cancelled() {
  const app = newApp();
  let taskId = '';
  let asked = false;
  try {
    await flowA(app, { kind: 'text', prompt: `a vase [[fake:run_s=60,nonce=${NONCE}c]]` }, {
      onTaskId: (id) => (taskId = id),
      onProgress: (s) => {
        if (!asked && s.status === 'processing') {
          asked = true;
          void app.cancel(taskId, 'model');
        }
      },
    });
    return { taskId, error: 'the cancelled flow completed' };
  } catch (e) {
    if (e instanceof StepFailedError) return { taskId, code: e.error.code, status: e.status?.status };
    return { taskId, error: String(e) };
  }
}

/** A page follows a task, is reloaded (its stream aborted), and a new page resumes by id. */
async function resumed() {
  let taskId = '';
  const page = new AbortController();
  const first: StatusResponse[] = [];
  try {
    await flowA(newApp(), { kind: 'text', prompt: `a stool [[fake:run_s=6,nonce=${NONCE}r]]` }, {
      onTaskId: (id) => (taskId = id),
      onProgress: (s) => {
        first.push(s);
        if (first.length === 1) page.abort();
      },
      signal: page.signal,
    });
  } catch (e) {
    if ((e as Error).name !== 'AbortError') throw e;
  }
  const after: StatusResponse[] = [];
  const final = await resume(newApp(), taskId, { onProgress: views(after) });
  return {
    taskId,
    before: brief(first),
    after: brief(after),
    status: final.status,
    assetUrl: final.asset_url,
  };
}

async function fiveImages() {
  let taskId: string | null = null;
  // A flow runs synchronously up to its first await: no other flow's request can come between.
  const before = requests.length;
  const flow = flowA(newApp(), { kind: 'image', images: [png(), png(), png(), png(), png()] }, {
    onTaskId: (id) => (taskId = id),
  });
  const made = requests.length - before;
  try {
    await flow;
    return { error: null };
  } catch (e) {
    return { error: String(e), name: (e as Error).name, requests: made, taskId };
  }
}

/** The worker's webhook for a text-to-model step, through a local server to the Edge Function's
 * handler: a tampered copy first (401, nothing marked), then the delivery itself. */
async function webhook() {
  const service = createClient(SUPABASE_URL, SERVICE_KEY, {
    auth: { persistSession: false, autoRefreshToken: false },
  });
  const handle = createHandler({ secret: env('WEBHOOK_SECRET'), supabase: service });
  const seen: {
    webhookId: string;
    tampered: number;
    markedAfterTampered: number;
    genuine: number;
  }[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const headers = new Headers();
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string') headers.set(k, v);
      const url = `http://127.0.0.1${req.url ?? '/'}`;
      const tamperedBody = body.replace('"complete"', '"failed"');
      const tampered = await handle(new Request(url, { method: 'POST', headers, body: tamperedBody }));
      const webhookId = headers.get('webhook-id') ?? '';
      const marked = await service.from('push_notifications').select('id').eq('webhook_id', webhookId);
      const genuine = await handle(new Request(url, { method: 'POST', headers, body }));
      seen.push({
        webhookId,
        tampered: tampered.status,
        markedAfterTampered: marked.data?.length ?? -1,
        genuine: genuine.status,
      });
      res.writeHead(genuine.status);
      res.end(await genuine.text());
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  try {
    const r = await flowA(newApp(), { kind: 'text', prompt: `a lamp [[fake:nonce=${NONCE}w]]` }, {
      webhookUrl: `http://127.0.0.1:${port}/makeit3d-webhook`,
    });
    const deadline = Date.now() + 60_000;
    while (seen.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    return { taskId: r.taskId, deliveries: seen };
  } finally {
    server.close();
  }
}

const settled = async <T>(p: Promise<T>): Promise<T | { error: string }> => {
  try {
    return await p;
  } catch (e) {
    return { error: e instanceof Error ? `${e.name}: ${e.message}` : String(e) };
  }
};

const [image, text, concepts, cancel, reload, five] = await Promise.all([
  settled(imageFlow()),
  settled(textFlow()),
  settled(conceptsFlow()),
  settled(cancelled()),
  settled(resumed()),
  settled(fiveImages()),
]);
const hook = await settled(webhook());
const statusReads = requests.filter((r) => r.path.endsWith('/status')).length;
console.log(JSON.stringify({ image, text, concepts, cancel, reload, five, hook, statusReads, requests: requests.length }));
