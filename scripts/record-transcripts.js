#!/usr/bin/env node
// Re-record the differential-testing transcripts in tests/conformance/transcripts/
// against the REAL LoopBack 3 (the reference install in /work/shared/loopback3/rig).
//
//   node scripts/record-transcripts.js [name|name.json|path ...]
//   scripts/record-transcripts.sh      [name ...]
//
// Environment:
//   LB3_RIG_SRC   read-only reference rig to copy          (default /work/shared/loopback3/rig)
//   LB3_RIG       an already installed rig to use as is    (default: <repo>/target/lb3rig,
//                 created from LB3_RIG_SRC + `npm ci` when missing)
//   RECORD_LOGS   where server logs are written            (default <repo>/target/lb3-record-logs)
//
// For every transcript: copy its LB3 app (`lb3App`, default `app`; "rig:<name>" means
// $LB3_RIG_SRC/apps/<name>) into a fresh temp dir, add the standard server/server.js if
// missing, start it with `run-app.sh TMPAPP PORT`, play every step with Node's http module
// (method, path+query and body bytes exactly as written), and write each response back into
// the transcript file. `{"restart": true}` steps stop the server and start it again on the
// same temp dir (so a memory datasource `file` survives). `{"stream": "s1", method, path, …}`
// steps open a request that is never waited for (change streams never end; status + headers
// are recorded at once) and `{"collect": "s1", "settleMs": 300}` steps wait, then record the
// bytes received on it so far and close it. `"capture": {"tok": "/id"}` takes a value out of a
// step's JSON response for later steps, which write `{{tok}}` (or `{{base64:tok}}`) in their
// path, header values and body; the file keeps the placeholders, and every captured value in a
// recorded body or header value is written back as `{{tok}}` (random tokens never reach the
// file). Node built-ins only.
'use strict';

const fs = require('fs');
const os = require('os');
const path = require('path');
const net = require('net');
const http = require('http');
const zlib = require('zlib');
const { spawn, spawnSync } = require('child_process');

const ROOT = path.resolve(__dirname, '..');
const RIG_SRC = path.resolve(process.env.LB3_RIG_SRC || '/work/shared/loopback3/rig');
const RIG = path.resolve(process.env.LB3_RIG || path.join(ROOT, 'target', 'lb3rig'));
const TRANSCRIPTS = path.join(ROOT, 'tests', 'conformance', 'transcripts');
const LOGS = path.resolve(process.env.RECORD_LOGS || path.join(ROOT, 'target', 'lb3-record-logs'));

const NPM_CI_TIMEOUT_MS = 15 * 60 * 1000;
const BOOT_TIMEOUT_MS = 60 * 1000;
const REQUEST_TIMEOUT_MS = 20 * 1000;
// A `collect` step waits this long (unless it says `settleMs`) before taking a stream's bytes.
const DEFAULT_SETTLE_MS = 300;
const STOP_TIMEOUT_MS = 5 * 1000;
// Response headers that depend on the clock or the connection, never recorded.
const SKIPPED_HEADERS = new Set(['date', 'connection', 'keep-alive', 'transfer-encoding']);
// Copying an app directory never takes these along (the repo root is an app too).
const SKIPPED_DIRS = new Set(['node_modules', '.git', 'target']);

// Every server we started, so that no node process outlives the recorder, and every temp app.
const children = new Set();
const tempDirs = new Set();

function log(...args) {
  console.log(...args);
}

// ---------------------------------------------------------------------------------------------
// reference install

function makeWritable(p) {
  const st = fs.lstatSync(p);
  if (st.isSymbolicLink()) return;
  fs.chmodSync(p, st.mode | 0o200 | (st.isDirectory() ? 0o100 : 0));
  if (st.isDirectory()) {
    for (const e of fs.readdirSync(p)) makeWritable(path.join(p, e));
  }
}

function ensureRig() {
  const installed = () => fs.existsSync(path.join(RIG, 'node_modules', 'loopback', 'package.json'));
  if (process.env.LB3_RIG) {
    if (!installed() || !fs.existsSync(path.join(RIG, 'run-app.sh'))) {
      throw new Error(`LB3_RIG=${RIG} is not an installed rig (run-app.sh + node_modules/loopback)`);
    }
    return;
  }
  if (!fs.existsSync(path.join(RIG, 'run-app.sh'))) {
    if (!fs.existsSync(path.join(RIG_SRC, 'run-app.sh'))) {
      throw new Error(`reference rig not found at ${RIG_SRC} (set LB3_RIG_SRC)`);
    }
    log(`copying ${RIG_SRC} -> ${RIG}`);
    fs.mkdirSync(path.dirname(RIG), { recursive: true });
    fs.cpSync(RIG_SRC, RIG, {
      recursive: true,
      filter: (src) => path.basename(src) !== 'node_modules',
    });
    makeWritable(RIG);
  }
  if (!installed()) {
    log(`npm ci in ${RIG} ...`);
    const r = spawnSync('npm', ['ci', '--no-audit', '--no-fund'], {
      cwd: RIG,
      stdio: 'inherit',
      timeout: NPM_CI_TIMEOUT_MS,
      killSignal: 'SIGKILL',
    });
    if (r.error) throw r.error;
    if (r.status !== 0 || !installed()) throw new Error(`npm ci failed in ${RIG} (status ${r.status})`);
  }
}

// ---------------------------------------------------------------------------------------------
// apps

function resolveApp(spec) {
  if (typeof spec !== 'string' || spec === '') throw new Error('transcript has no "app"');
  if (spec.startsWith('rig:')) return path.join(RIG_SRC, 'apps', spec.slice(4));
  return path.resolve(ROOT, spec);
}

function copyDir(src, dst) {
  fs.mkdirSync(dst, { recursive: true });
  for (const e of fs.readdirSync(src, { withFileTypes: true })) {
    if (SKIPPED_DIRS.has(e.name)) continue;
    const s = path.join(src, e.name);
    const d = path.join(dst, e.name);
    if (e.isDirectory()) copyDir(s, d);
    else if (e.isFile()) fs.copyFileSync(s, d);
    else if (e.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(s), d);
  }
}

function prepareApp(spec) {
  const src = resolveApp(spec);
  if (!fs.existsSync(path.join(src, 'server'))) throw new Error(`${src} has no server/ directory`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'oxbow-lb3-'));
  tempDirs.add(tmp);
  copyDir(src, tmp);
  makeWritable(tmp);
  const serverJs = path.join(tmp, 'server', 'server.js');
  if (!fs.existsSync(serverJs)) {
    fs.copyFileSync(path.join(RIG_SRC, 'apps', 'shop', 'server', 'server.js'), serverJs);
    fs.chmodSync(serverJs, 0o644);
  }
  return tmp;
}

// Memory datasources with a `file` setting (paths relative to the app dir = LB3's cwd).
function datasourceFiles(appDir) {
  try {
    const ds = JSON.parse(fs.readFileSync(path.join(appDir, 'server', 'datasources.json'), 'utf8'));
    return Object.values(ds)
      .filter((d) => d && typeof d.file === 'string')
      .map((d) => path.resolve(appDir, d.file));
  } catch (_) {
    return [];
  }
}

// ---------------------------------------------------------------------------------------------
// server process

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    const done = (ok) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.once('connect', () => done(true));
    sock.once('error', () => done(false));
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
// A timer that does not keep the recorder alive once everything else is done.
const deadline = (ms) => new Promise((r) => setTimeout(r, ms).unref());

async function startServer(appDir, logStream) {
  const port = await freePort();
  const env = { ...process.env };
  delete env.NODE_ENV; // loopback-boot then uses "development", like `node .` on a dev machine
  const child = spawn('bash', [path.join(RIG, 'run-app.sh'), appDir, String(port)], {
    cwd: appDir,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // own process group: stopServer kills the whole group
  });
  children.add(child);
  child.exited = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      children.delete(child);
      child.exitInfo = { code, signal };
      resolve(child.exitInfo);
    });
  });
  child.stdout.on('data', (d) => logStream.write(d));
  child.stderr.on('data', (d) => logStream.write(d));
  const bootDeadline = Date.now() + BOOT_TIMEOUT_MS;
  while (Date.now() < bootDeadline) {
    if (child.exitInfo) {
      throw new Error(`LB3 exited during boot (${JSON.stringify(child.exitInfo)}), see ${logStream.path}`);
    }
    if (await canConnect(port)) return { child, port };
    await sleep(100);
  }
  await stopServer(child);
  throw new Error(`LB3 did not accept connections on port ${port} within ${BOOT_TIMEOUT_MS} ms`);
}

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch (_) {
    try {
      child.kill(signal);
    } catch (_) {
      /* already gone */
    }
  }
}

async function stopServer(child) {
  if (!child || child.exitInfo) return;
  killGroup(child, 'SIGTERM');
  const t = await Promise.race([child.exited, deadline(STOP_TIMEOUT_MS).then(() => 'timeout')]);
  if (t === 'timeout') {
    killGroup(child, 'SIGKILL');
    await Promise.race([child.exited, deadline(STOP_TIMEOUT_MS)]);
  }
}

function killAllSync() {
  for (const c of children) killGroup(c, 'SIGKILL');
  for (const d of tempDirs) {
    try {
      fs.rmSync(d, { recursive: true, force: true });
    } catch (_) {
      /* best effort */
    }
  }
}
process.on('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    killAllSync();
    process.exit(130);
  });
}

// ---------------------------------------------------------------------------------------------
// playing a step

function startRequest(port, step, timeoutMs) {
  const headers = { ...(step.headers || {}) };
  const body = step.body === undefined ? null : Buffer.from(String(step.body), 'utf8');
  const has = (name) => Object.keys(headers).some((k) => k.toLowerCase() === name);
  if (body !== null && !has('content-length') && !has('transfer-encoding')) {
    headers['Content-Length'] = String(body.length);
  }
  const req = http.request({
    host: '127.0.0.1',
    port,
    method: step.method,
    path: step.path, // sent verbatim: no re-encoding
    headers,
    agent: false, // one connection per step
    timeout: timeoutMs,
  });
  return { req, body };
}

function recordedHeaders(res) {
  const h = {};
  for (let i = 0; i < res.rawHeaders.length; i += 2) {
    const name = res.rawHeaders[i].toLowerCase();
    if (SKIPPED_HEADERS.has(name)) continue;
    h[name] = name in h ? `${h[name]}, ${res.rawHeaders[i + 1]}` : res.rawHeaders[i + 1];
  }
  return h;
}

// `body` (valid UTF-8) or `bodyBase64` (anything else) for a response object.
function bodyField(buf) {
  try {
    return { body: new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(buf) };
  } catch (_) {
    return { bodyBase64: buf.toString('base64') };
  }
}

function play(port, step) {
  return new Promise((resolve, reject) => {
    const { req, body } = startRequest(port, step, REQUEST_TIMEOUT_MS);
    const timer = setTimeout(() => req.destroy(new Error(`no complete response within ${REQUEST_TIMEOUT_MS} ms`)), REQUEST_TIMEOUT_MS);
    req.on('timeout', () => req.destroy(new Error('socket timeout')));
    req.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    req.on('response', (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      res.on('end', () => {
        clearTimeout(timer);
        const response = { status: res.statusCode, headers: recordedHeaders(res) };
        let raw = Buffer.concat(chunks);
        // A compressed body is recorded decoded (the coding stays in the headers): compressed
        // bytes depend on the zlib build, the decoded body is the contract.
        const coding = (res.headers['content-encoding'] || '').trim();
        if (raw.length && coding === 'gzip') raw = zlib.gunzipSync(raw);
        else if (raw.length && coding === 'deflate') raw = zlib.inflateSync(raw);
        else if (raw.length && coding === 'br') raw = zlib.brotliDecompressSync(raw);
        Object.assign(response, bodyField(raw));
        resolve(response);
      });
    });
    if (body !== null) req.end(body);
    else req.end();
  });
}

// A `stream` step: send the request and resolve as soon as the status line and headers are in
// (LB3 registers its observers before it answers), with `{response, stream}`. The body bytes
// (de-chunked by Node's parser) keep accumulating in `stream.chunks` until `closeStream`.
// A response that ends by itself (e.g. a 400) simply stops accumulating.
function openStream(port, step) {
  return new Promise((resolve, reject) => {
    const { req, body } = startRequest(port, step, REQUEST_TIMEOUT_MS);
    const stream = { req, res: null, chunks: [], closed: false };
    let answered = false;
    const timer = setTimeout(() => req.destroy(new Error(`no response headers within ${REQUEST_TIMEOUT_MS} ms`)), REQUEST_TIMEOUT_MS);
    req.on('timeout', () => {
      if (!answered) req.destroy(new Error('socket timeout'));
    });
    req.on('error', (e) => {
      clearTimeout(timer);
      if (!answered) reject(e); // later errors (our own destroy, a server stop) are expected
    });
    req.on('response', (res) => {
      answered = true;
      clearTimeout(timer);
      req.setTimeout(0); // an idle stream is not an error
      stream.res = res;
      res.on('data', (c) => {
        if (!stream.closed) stream.chunks.push(c);
      });
      res.on('error', () => {});
      res.on('aborted', () => {});
      resolve({ response: { status: res.statusCode, headers: recordedHeaders(res), body: '' }, stream });
    });
    if (body !== null) req.end(body);
    else req.end();
  });
}

function closeStream(stream) {
  if (stream.closed) return;
  stream.closed = true;
  stream.req.destroy();
}

// ---------------------------------------------------------------------------------------------
// captured values: `capture`, `captureShape`, `{{name}}` and `{{base64:name}}`

// A placeholder in a request field: `{{name}}` or `{{base64:name}}`.
const PLACEHOLDER = /\{\{(base64:)?([A-Za-z_][A-Za-z0-9_]*)\}\}/g;
const CAPTURE_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
// Captured values shorter than this are substituted into requests but never written back as
// placeholders into recorded answers (an id `1` would turn every digit 1 into `{{id}}`).
const MIN_REDACTED_LENGTH = 8;
// What an access token of LoopBack's default length looks like, to warn about one that no
// capture names (it would end up in the file).
const TOKEN_LIKE = /(?<![A-Za-z0-9])[A-Za-z0-9]{64}(?![A-Za-z0-9])/;

// `text` with every placeholder whose name has been captured replaced by its value (base64 of
// its UTF-8 text for `{{base64:name}}`); unknown names stay as written.
function substitute(text, vars) {
  return text.replace(PLACEHOLDER, (whole, b64, name) => {
    if (!vars.has(name)) return whole;
    const value = String(vars.get(name));
    return b64 ? Buffer.from(value, 'utf8').toString('base64') : value;
  });
}

// The request a step sends: its path, header values and body with the captured values in.
function withVars(step, vars) {
  const sent = { ...step, path: substitute(step.path, vars) };
  if (step.headers) {
    sent.headers = {};
    for (const [k, v] of Object.entries(step.headers)) sent.headers[k] = substitute(String(v), vars);
  }
  if (step.body !== undefined) sent.body = substitute(String(step.body), vars);
  return sent;
}

// RFC 6901: the value at `pointer` in `doc`, or `undefined`.
function resolvePointer(doc, pointer) {
  if (pointer === '') return doc;
  let cur = doc;
  for (const raw of pointer.slice(1).split('/')) {
    const key = raw.replace(/~1/g, '/').replace(/~0/g, '~');
    if (cur === null || typeof cur !== 'object') return undefined;
    if (Array.isArray(cur)) {
      if (!/^(0|[1-9][0-9]*)$/.test(key) || Number(key) >= cur.length) return undefined;
      cur = cur[Number(key)];
    } else {
      if (!Object.prototype.hasOwnProperty.call(cur, key)) return undefined;
      cur = cur[key];
    }
  }
  return cur;
}

// Takes the step's captures out of LoopBack's answer into `vars`; throws when a pointer is
// missing, names something other than a string or a number, or the value fails its shape.
function captureValues(step, response, vars, where) {
  if (!step.capture) return;
  let doc;
  try {
    doc = JSON.parse(response.body);
  } catch (_) {
    throw new Error(`${where}: "capture" needs a JSON answer, LoopBack answered ${response.status} ${JSON.stringify(response.body)}`);
  }
  for (const [name, pointer] of Object.entries(step.capture)) {
    const value = resolvePointer(doc, pointer);
    if (typeof value !== 'string' && typeof value !== 'number') {
      throw new Error(`${where}: capture "${name}": ${pointer} is ${value === undefined ? 'missing' : JSON.stringify(value)} in LoopBack's answer ${response.status} ${response.body} (a string or a number is needed)`);
    }
    const shape = step.captureShape && step.captureShape[name];
    if (shape !== undefined && !new RegExp(shape).test(String(value))) {
      throw new Error(`${where}: capture "${name}" = ${JSON.stringify(value)} does not match its captureShape ${shape}`);
    }
    vars.set(name, value);
  }
}

// Every captured value (long enough to be unique) in a recorded text written as `{{name}}`,
// longest values first.
function redact(text, vars) {
  const values = [...vars.entries()]
    .map(([name, v]) => [name, String(v)])
    .filter(([, v]) => v.length >= MIN_REDACTED_LENGTH)
    .sort((a, b) => b[1].length - a[1].length);
  for (const [name, v] of values) text = text.split(v).join(`{{${name}}}`);
  return text;
}

function redactResponse(response, vars) {
  if (typeof response.body === 'string') response.body = redact(response.body, vars);
  if (response.headers) {
    for (const k of Object.keys(response.headers)) response.headers[k] = redact(response.headers[k], vars);
  }
  return response;
}

// ---------------------------------------------------------------------------------------------
// transcript files

const STEP_KEYS = ['title', 'stream', 'collect', 'settleMs', 'restart', 'method', 'path', 'headers', 'body', 'mask', 'compare', 'capture', 'captureShape'];
const TOP_KEYS = ['description', 'app', 'lb3App'];

function orderKeys(obj, first, last) {
  const out = {};
  for (const k of first) if (obj[k] !== undefined) out[k] = obj[k];
  for (const k of Object.keys(obj)) if (!(k in out) && !last.includes(k)) out[k] = obj[k];
  for (const k of last) if (obj[k] !== undefined) out[k] = obj[k];
  return out;
}

function normalizeTranscript(t) {
  const steps = t.steps.map((s) => {
    const restartFirst = s.restart ? ['restart', 'title'] : STEP_KEYS;
    return orderKeys(s, restartFirst, ['response']);
  });
  return orderKeys({ ...t, steps }, TOP_KEYS, ['steps']);
}

function validate(t, file) {
  if (!t || typeof t !== 'object' || !Array.isArray(t.steps)) throw new Error(`${file}: no "steps" array`);
  const open = new Set(); // stream names opened and not collected yet
  const captured = new Set(); // names captured by earlier steps
  t.steps.forEach((s, i) => {
    const where = `${file} step ${i + 1} (${s.title || 'untitled'})`;
    const plain = !s.restart && s.collect === undefined && s.stream === undefined;
    if (!plain && (s.capture !== undefined || s.captureShape !== undefined)) {
      throw new Error(`${where}: only an ordinary request step can "capture"`);
    }
    if (s.restart) return;
    if (s.collect !== undefined) {
      if (typeof s.collect !== 'string' || !open.has(s.collect)) {
        throw new Error(`${where}: "collect" must name a stream opened by an earlier step and not collected yet`);
      }
      if (s.stream !== undefined || s.method !== undefined || s.path !== undefined || s.body !== undefined) {
        throw new Error(`${where}: a "collect" step has no "stream", "method", "path" or "body"`);
      }
      if (s.settleMs !== undefined && !(Number.isFinite(s.settleMs) && s.settleMs >= 0)) {
        throw new Error(`${where}: "settleMs" must be a number >= 0`);
      }
      open.delete(s.collect);
      return;
    }
    if (s.settleMs !== undefined) throw new Error(`${where}: "settleMs" only goes with "collect"`);
    if (s.stream !== undefined) {
      if (typeof s.stream !== 'string' || s.stream === '') throw new Error(`${where}: "stream" must be a name`);
      if (open.has(s.stream)) throw new Error(`${where}: stream "${s.stream}" is already open`);
      open.add(s.stream);
    }
    if (typeof s.method !== 'string' || typeof s.path !== 'string' || !s.path.startsWith('/')) {
      throw new Error(`${where}: needs "method" and a "path" starting with /`);
    }
    if (s.body !== undefined && typeof s.body !== 'string') throw new Error(`${where}: "body" must be a string`);
    if (s.compare !== undefined && !['exact', 'status'].includes(s.compare)) {
      throw new Error(`${where}: "compare" must be "exact" or "status"`);
    }
    // A placeholder must name a value captured before: a typo would send the braces as is.
    const fields = [s.path, ...Object.values(s.headers || {}).map(String), s.body === undefined ? '' : s.body];
    for (const text of fields) {
      for (const m of text.matchAll(PLACEHOLDER)) {
        if (!captured.has(m[2])) throw new Error(`${where}: ${m[0]} names no value captured by an earlier step`);
      }
    }
    if (s.capture !== undefined) {
      if (!s.capture || typeof s.capture !== 'object' || Array.isArray(s.capture)) {
        throw new Error(`${where}: "capture" must be an object of name -> JSON pointer`);
      }
      for (const [name, pointer] of Object.entries(s.capture)) {
        if (!CAPTURE_NAME.test(name)) throw new Error(`${where}: capture name "${name}" must match ${CAPTURE_NAME}`);
        if (typeof pointer !== 'string' || (pointer !== '' && !pointer.startsWith('/'))) {
          throw new Error(`${where}: capture "${name}" must be a JSON pointer ("" or starting with /)`);
        }
      }
    }
    if (s.captureShape !== undefined) {
      if (!s.captureShape || typeof s.captureShape !== 'object' || Array.isArray(s.captureShape)) {
        throw new Error(`${where}: "captureShape" must be an object of name -> regular expression`);
      }
      for (const [name, shape] of Object.entries(s.captureShape)) {
        if (!s.capture || !(name in s.capture)) throw new Error(`${where}: captureShape "${name}" names no capture of this step`);
        if (typeof shape !== 'string') throw new Error(`${where}: captureShape "${name}" must be a string`);
        try {
          new RegExp(shape);
        } catch (e) {
          throw new Error(`${where}: captureShape "${name}": ${e.message}`);
        }
      }
    }
    for (const name of Object.keys(s.capture || {})) captured.add(name);
  });
}

function listTranscripts(args) {
  if (args.length === 0) {
    return fs
      .readdirSync(TRANSCRIPTS)
      .filter((f) => f.endsWith('.json'))
      .sort()
      .map((f) => path.join(TRANSCRIPTS, f));
  }
  return args.map((a) => {
    if (a.includes('/') || a.endsWith('.json')) {
      const p = path.resolve(a.includes('/') ? process.cwd() : TRANSCRIPTS, a);
      if (fs.existsSync(p)) return p;
    }
    const p = path.join(TRANSCRIPTS, a.endsWith('.json') ? a : `${a}.json`);
    if (!fs.existsSync(p)) throw new Error(`no transcript ${a} (looked for ${p})`);
    return p;
  });
}

async function recordOne(file) {
  const name = path.basename(file, '.json');
  const t = JSON.parse(fs.readFileSync(file, 'utf8'));
  validate(t, name);
  const appSpec = t.lb3App || t.app;
  const appDir = prepareApp(appSpec);
  fs.mkdirSync(LOGS, { recursive: true });
  const logPath = path.join(LOGS, `${name}.server.log`);
  const logStream = fs.createWriteStream(logPath);
  const started = Date.now();
  let server = null;
  let changed = 0;
  const streams = new Map(); // name -> open stream (see openStream)
  const vars = new Map(); // captured name -> value (string or number)
  try {
    server = await startServer(appDir, logStream);
    for (let i = 0; i < t.steps.length; i++) {
      const step = t.steps[i];
      if (step.restart) {
        // open streams end with the old server; what they received can still be collected
        logStream.write(`\n----- restart (step ${i + 1}) -----\n`);
        await stopServer(server.child);
        server = await startServer(appDir, logStream);
        continue;
      }
      const where = `${name} step ${i + 1} (${step.title || 'untitled'})`;
      let response;
      if (step.collect !== undefined) {
        const settle = step.settleMs === undefined ? DEFAULT_SETTLE_MS : step.settleMs;
        await sleep(settle);
        logStream.write(`\n----- step ${i + 1}: collect stream ${step.collect} (after ${settle} ms) -----\n`);
        const stream = streams.get(step.collect);
        streams.delete(step.collect);
        const buf = Buffer.concat(stream.chunks);
        closeStream(stream);
        response = bodyField(buf);
      } else if (step.stream !== undefined) {
        logStream.write(`\n----- step ${i + 1}: open stream ${step.stream}: ${step.method} ${step.path} -----\n`);
        const opened = await openStream(server.port, withVars(step, vars));
        streams.set(step.stream, opened.stream);
        response = opened.response;
      } else {
        logStream.write(`\n----- step ${i + 1}: ${step.method} ${step.path} -----\n`);
        response = await play(server.port, withVars(step, vars));
        captureValues(step, response, vars, where);
      }
      redactResponse(response, vars);
      if (typeof response.body === 'string' && TOKEN_LIKE.test(response.body)) {
        console.error(`${where}: warning: the answer holds a 64-character token no capture names: ${response.body}`);
      }
      if (JSON.stringify(response) !== JSON.stringify(step.response)) changed++;
      step.response = response;
    }
  } finally {
    for (const stream of streams.values()) closeStream(stream); // still open at the end
    streams.clear();
    if (server) await stopServer(server.child);
    await new Promise((r) => logStream.end(r));
    // keep what LB3 persisted (memory `file` datasources) next to the log, for reference
    for (const f of datasourceFiles(appDir)) {
      if (fs.existsSync(f)) fs.copyFileSync(f, path.join(LOGS, `${name}.${path.basename(f)}`));
    }
    fs.rmSync(appDir, { recursive: true, force: true });
    tempDirs.delete(appDir);
  }
  fs.writeFileSync(file, JSON.stringify(normalizeTranscript(t), null, 2) + '\n');
  const steps = t.steps.filter((s) => !s.restart).length;
  log(`${name}: ${steps} steps, ${changed} changed, ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return steps;
}

async function main() {
  const t0 = Date.now();
  const files = listTranscripts(process.argv.slice(2));
  ensureRig();
  let total = 0;
  const failed = [];
  for (const f of files) {
    try {
      total += await recordOne(f);
    } catch (e) {
      failed.push(path.basename(f));
      console.error(`${path.basename(f)}: FAILED (file left unchanged): ${e.stack || e}`);
    }
  }
  log(`${files.length - failed.length}/${files.length} transcripts, ${total} steps recorded in ${((Date.now() - t0) / 1000).toFixed(1)} s; server logs in ${LOGS}`);
  if (failed.length) {
    console.error(`failed: ${failed.join(', ')}`);
    process.exitCode = 1;
  }
}

// scripts/fuzz-differential.js drives LoopBack 3 with the same helpers.
module.exports = { ensureRig, prepareApp, startServer, stopServer, play, freePort, canConnect, sleep, tempDirs, children, RIG, ROOT, substitute, redact, resolvePointer };

if (require.main === module) {
  main().catch((e) => {
    console.error(e.stack || e);
    killAllSync();
    process.exit(1);
  });
}
