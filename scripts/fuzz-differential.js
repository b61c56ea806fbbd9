#!/usr/bin/env node
// Differential fuzzing: the same random rows and random requests sent to the real LoopBack 3
// and to oxbow, answers compared byte for byte.
//
//   node scripts/fuzz-differential.js [--app inventory|shop|registry] [--seed N] [--count N] [--rows N]
//        [--writes] [--wild-order] [--connector memory|sqlite|postgresql] [--serve] [--until N]
//        [--oxbow target/release/oxbow] [--out target/fuzz]
//
// `--app inventory` (the default; tests/conformance/apps/inventory, model Item: strings,
// numbers, booleans, arrays, an object, a date, a hidden property, undeclared properties):
// `--rows` random items, then `--count` requests: find with a random filter (every operator,
// nested and/or, dot paths, order, limit/skip, fields; JSON or bracket syntax), findOne, count
// with `where`, findById with `fields`; with `--writes` also `POST /update` and `PATCH /:id`.
// `--app shop` (examples/shop): customers, orders, products and order lines linked at random
// (some foreign keys dangling), then `include` in every form (string, array, object, nested,
// `{relation, scope}` with where/order/limit/skip/fields/include) on lists, findById and
// findOne, and the relation routes (hasMany, belongsTo, hasMany through, with filters, count);
// with `--writes` also creates through a relation and deletes. `--app registry`
// (tests/conformance/apps/registry): ids of every kind (generated, given, numeric strings,
// string ids, `forceId: false`, 0, negative, fractional, null) through every CRUD route, on
// seven models (one on a memory `file` store). After every write all the
// app's collections must still agree, else the run stops.
//
// `--connector` puts oxbow's copy of the app on another store (LoopBack 3 stays on its memory
// connector, whose answers oxbow gives on every connector: docs/COMPATIBILITY.md): `sqlite` in
// a temporary file, `postgresql` in a fresh schema `fuzz_<seed>` of $OXBOW_TEST_POSTGRES.
//
// Every difference is printed, numbered, and written to `<out>/mismatches-<seed>.json` (with,
// under `lb3Failed`, the requests LoopBack 3 failed with a 500 and oxbow answered: each such
// class is a deviation in docs/COMPATIBILITY.md). Copy the steps worth keeping into a
// transcript and record it with scripts/record-transcripts.sh. `--serve` replays the rows and
// the requests before the one numbered `--until N` (or all `--count`), then keeps both servers
// up, their URLs printed, to try requests by hand. Exit status 1 when anything differed.
//
// The generators avoid the deviations they know of (two operators on one property, `inq` on
// dates, date strings only V8 reads, values LoopBack stores as NaN). Needs Node 20, the LB3 rig
// (as scripts/record-transcripts.js; built-ins only) and a release build of oxbow.
'use strict';

const fs = require('fs');
const path = require('path');
const { spawn, spawnSync } = require('child_process');
const rec = require('./record-transcripts.js');


function args() {
  const a = { seed: Date.now() % 100000, count: 500, rows: 24, writes: false, connector: 'memory', app: 'inventory' };
  a.oxbow = path.join(rec.ROOT, 'target', 'release', 'oxbow');
  a.out = path.join(rec.ROOT, 'target', 'fuzz');
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--writes') a.writes = true;
    else if (k === '--wild-order') a.wildOrder = true;
    else if (k === '--serve') a.serve = true;
    else if (k === '--until') a.until = Number(argv[++i]);
    else if (['--seed', '--count', '--rows'].includes(k)) a[k.slice(2)] = Number(argv[++i]);
    else if (k === '--oxbow' || k === '--out') a[k.slice(2)] = path.resolve(argv[++i]);
    else if (k === '--connector') a.connector = argv[++i];
    else if (k === '--app') a.app = argv[++i];
    else throw new Error(`unknown argument ${k} (see the header of ${__filename})`);
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// randomness (seeded, so a run can be repeated)

function prng(seed) {
  let s = seed >>> 0;
  const next = () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const r = {
    next,
    int: (lo, hi) => lo + Math.floor(next() * (hi - lo + 1)),
    pick: (xs) => xs[Math.floor(next() * xs.length)],
    chance: (p) => next() < p,
  };
  r.some = (xs, lo, hi) => {
    const n = r.int(lo, hi);
    const out = [];
    for (let i = 0; i < n; i++) out.push(r.pick(xs));
    return out;
  };
  return r;
}

const STRINGS = ['alpha', 'Alpha', 'beta', 'Beta gamma', 'gamma', '', 'a%b', 'a_b', 'x.y', 'über',
  '10', '2.5', '-3', 'true', 'false', 'null', '2020-01-01T00:00:00.000Z', 'a*', '(x)', 'red', 'RED'];
const NUMBERS = [0, 1, -1, 2.5, 3, 10, 42, 100, 1e3, -0.5];
const COLORS = ['red', 'Red', 'green', 'blue', 'blue ', ''];
const DATES = ['2020-01-01T00:00:00.000Z', '2021-06-15T12:30:00.000Z', '2019-12-31', '2022-02-02T02:02:02Z'];

function scalar(r) {
  switch (r.int(0, 6)) {
    case 0: case 1: return r.pick(STRINGS);
    case 2: case 3: return r.pick(NUMBERS);
    case 4: return r.chance(0.5);
    case 5: return null;
    default: return r.pick(DATES);
  }
}

// One stored row: mostly well typed, sometimes missing, null or of the wrong type.
function row(r, i) {
  const o = { name: `${r.pick(STRINGS) || 'n'}-${i}` };
  const maybe = (key, gen) => {
    const p = r.next();
    if (p < 0.15) return; // missing
    if (p < 0.22) o[key] = null;
    else o[key] = gen();
  };
  maybe('qty', () => r.pick(NUMBERS));
  maybe('price', () => (r.chance(0.9) ? r.pick(NUMBERS) : String(r.pick(NUMBERS))));
  maybe('active', () => (r.chance(0.9) ? r.chance(0.5) : r.pick(['true', 'false', 1, 0])));
  maybe('color', () => r.pick(COLORS));
  maybe('note', () => r.pick(STRINGS));
  maybe('tags', () => r.some(['a', 'b', 'red', 'Blue', '10'], 0, 3));
  maybe('sizes', () => r.some([1, 2, 3, 10, 2.5], 0, 3));
  maybe('address', () => ({ city: r.pick(['Oslo', 'oslo', 'Rome', '']), zip: r.pick([1000, 2000, '0150']) }));
  maybe('added', () => r.pick(DATES));
  maybe('secret', () => r.pick(STRINGS));
  if (r.chance(0.3)) o.extra = scalar(r);
  return o;
}

// ---------------------------------------------------------------------------------------------
// filters

const PROPS = ['name', 'qty', 'price', 'active', 'color', 'note', 'tags', 'sizes', 'added', 'id',
  'extra', 'secret', 'address.city', 'address.zip', 'nope'];

function valueFor(r, prop) {
  // (Dates only as ISO text: V8 also reads "2.5" or "10" as dates, oxbow answers 400.)
  if (prop !== 'added' && r.chance(0.2)) return scalar(r);
  switch (prop) {
    case 'qty': case 'price': case 'sizes': case 'address.zip':
      return r.chance(0.8) ? r.pick(NUMBERS) : String(r.pick(NUMBERS));
    case 'id': return r.int(0, 30);
    case 'active': return r.chance(0.8) ? r.chance(0.5) : r.pick(['true', 'false', 0, 1]);
    case 'added': return r.pick(DATES);
    case 'color': return r.pick(COLORS);
    case 'address.city': return r.pick(['Oslo', 'oslo', 'Rome']);
    default: return r.pick(STRINGS);
  }
}

const PATTERNS = ['a%', '%a', '%e%', '_lpha', 'Al%', 'al%', '%', '', 'a.b', '^a', 'red', 're_',
  '%\\%%', 'a*', '[ab]%', '(x)'];
const REGEXPS = ['^a', '^A', 'a$', '/^a/i', '/^A/', 'e', '.', '^$', '[0-9]', '/red/i', '^(red|blue)$'];

function condition(r, prop) {
  const op = r.pick(['eq', 'eq', 'neq', 'gt', 'gte', 'lt', 'lte', 'between', 'inq', 'nin',
    'like', 'nlike', 'ilike', 'nilike', 'regexp']);
  switch (op) {
    case 'eq': return valueFor(r, prop);
    case 'between': return { between: [valueFor(r, prop), valueFor(r, prop)] };
    case 'inq': case 'nin': {
      // LoopBack compares Date objects by identity here (deviation in docs/COMPATIBILITY.md).
      if (prop === 'added') return valueFor(r, prop);
      const vs = [];
      for (let i = r.int(0, 3); i > 0; i--) vs.push(valueFor(r, prop));
      return { [op]: r.chance(0.9) ? vs : valueFor(r, prop) };
    }
    case 'like': case 'nlike': case 'ilike': case 'nilike': return { [op]: r.pick(PATTERNS) };
    case 'regexp': return { regexp: r.pick(REGEXPS) };
    default: return { [op]: valueFor(r, prop) };
  }
}

function where(r, depth) {
  const w = {};
  const n = r.int(1, depth > 0 ? 2 : 1);
  for (let i = 0; i < n; i++) {
    if (depth < 2 && r.chance(0.2)) {
      const key = r.chance(0.5) ? 'and' : 'or';
      const subs = [];
      for (let j = r.int(1, 3); j > 0; j--) subs.push(where(r, depth + 1));
      w[key] = subs;
    } else {
      const prop = r.pick(PROPS);
      w[prop] = condition(r, prop);
    }
  }
  return w;
}

// Keys whose values JavaScript can always compare with each other (numbers and null, booleans
// and null, strings without null, dates): LoopBack's sort is an order on them. On the others
// (strings mixed with null, arrays, mixed undeclared values) its result depends on V8's sort
// algorithm and oxbow deliberately uses a fixed order instead (docs/COMPATIBILITY.md); they are
// sorted on only with `--wild-order`.
const ORDER_KEYS = ['name', 'qty', 'price', 'active', 'added', 'id'];
const WILD_ORDER_KEYS = ['color', 'note', 'tags', 'sizes', 'extra', 'secret', 'address.city'];

function order(r) {
  const keys = r.wildOrder ? ORDER_KEYS.concat(WILD_ORDER_KEYS) : ORDER_KEYS;
  const one = () => r.pick(keys) + r.pick(['', ' ASC', ' DESC', ' desc']);
  const n = r.int(1, 2);
  if (n === 1) return one();
  return [one(), one()];
}

function filter(r) {
  const f = {};
  if (r.chance(0.8)) f.where = where(r, 0);
  if (r.chance(0.4)) f.order = order(r);
  if (r.chance(0.3)) f.limit = r.pick([0, 1, 2, 5, 10, '3']);
  if (r.chance(0.15)) f[r.pick(['skip', 'offset'])] = r.pick([0, 1, 3, '2']);
  if (r.chance(0.2)) {
    const fields = r.some(['name', 'qty', 'color', 'id', 'secret', 'tags', 'extra'], 1, 3);
    f.fields = r.chance(0.5) ? fields : Object.fromEntries(fields.map((k) => [k, r.chance(0.8)]));
  }
  return f;
}

// `filter[where][qty][gt]=5` form of an object (every value becomes a string, as in a URL).
function brackets(prefix, v, out) {
  if (v === null) out.push(`${prefix}=null`);
  else if (Array.isArray(v)) v.forEach((x, i) => brackets(`${prefix}[${i}]`, x, out));
  else if (typeof v === 'object') for (const [k, x] of Object.entries(v)) brackets(`${prefix}[${k}]`, x, out);
  else out.push(`${prefix}=${encodeURIComponent(String(v))}`);
  return out;
}

// Whether a bracket URL means what the JSON means: empty arrays and objects vanish from it.
function bracketable(v) {
  if (Array.isArray(v)) return v.length > 0 && v.every(bracketable);
  if (v && typeof v === 'object') return Object.keys(v).length > 0 && Object.values(v).every(bracketable);
  return v !== '';
}

// A value a write may give `prop`. Not one LoopBack stores as NaN or an Invalid Date (`qty:
// "red"`, `added: "alpha"`): it prints null but JavaScript cannot sort it, where oxbow stores
// null (a documented oddity, not worth finding again).
function typedValue(r, prop) {
  switch (prop) {
    case 'qty': return r.pick(NUMBERS);
    case 'price': return String(r.pick(NUMBERS));
    case 'active': return r.pick([true, false, 'true', 'false', 0, 1, null, 'yes']);
    case 'sizes': return r.pick([[1, 2], [], null, 0, '[3]', [10, 2.5]]);
    default: return scalar(r);
  }
}

// A `where` for a write, without `regexp`: LoopBack fails a regexp on a non-string with a 500
// halfway through a write (deviation D5), after which the stores differ for good.
function writeWhere(r) {
  for (;;) {
    const w = where(r, 0);
    if (!JSON.stringify(w).includes('regexp')) return w;
  }
}

function request(r, opts) {
  const kind = r.next();
  const json = (v) => encodeURIComponent(JSON.stringify(v));
  if (opts.writes && kind < 0.06) {
    const w = writeWhere(r);
    // (Not a list property: LoopBack's updateAll stores `{tags: 0}` as given, printed as [] but
    // matched as 0, where oxbow stores [].)
    const prop = r.pick(['qty', 'color', 'note', 'active']);
    const data = { [prop]: typedValue(r, prop) };
    return { method: 'POST', path: `/api/Items/update?where=${json(w)}`, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(data) };
  }
  if (opts.writes && kind < 0.1) {
    const prop = r.pick(['qty', 'price', 'color', 'active', 'sizes']);
    const data = { [prop]: typedValue(r, prop) };
    return { method: 'PATCH', path: `/api/Items/${r.int(1, opts.rows + 1)}`, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(data) };
  }
  if (opts.writes && kind < 0.14) {
    // The other writers, each with a whole random row (as seeded) or a part of one.
    const headers = { 'Content-Type': 'application/json' };
    const id = r.int(1, opts.rows + 3); // a few past the last row: not found, or created
    const whole = () => row(r, 100 + r.int(0, 99));
    const part = () => {
      const prop = r.pick(['qty', 'price', 'color', 'active', 'sizes', 'note']);
      return { [prop]: typedValue(r, prop) };
    };
    const body = (v) => JSON.stringify(v);
    switch (r.int(0, 6)) {
      case 0: return { method: 'PUT', path: `/api/Items/${id}`, headers, body: body(whole()) };
      case 1: return { method: 'POST', path: `/api/Items/${id}/replace`, headers, body: body(whole()) };
      case 2: return { method: 'PATCH', path: '/api/Items', headers, body: body({ id, ...part() }) };
      case 3: return { method: 'PUT', path: '/api/Items', headers, body: body({ id, ...whole() }) };
      case 4: return { method: 'POST', path: `/api/Items/upsertWithWhere?where=${json(writeWhere(r))}`, headers, body: body(part()) };
      case 5: return { method: 'DELETE', path: `/api/Items/${id}` };
      default: return { method: 'POST', path: '/api/Items', headers, body: body(whole()) };
    }
  }
  if (kind < 0.2) return { method: 'GET', path: `/api/Items/count?where=${json(where(r, 0))}` };
  if (kind < 0.3) return { method: 'GET', path: `/api/Items/findOne?filter=${json(filter(r))}` };
  if (kind < 0.35) {
    const f = { fields: r.some(['name', 'qty', 'id', 'secret', 'extra'], 1, 3) };
    return { method: 'GET', path: `/api/Items/${r.int(0, opts.rows + 1)}?filter=${json(f)}` };
  }
  const f = filter(r);
  if (r.chance(0.3) && bracketable(f)) {
    return { method: 'GET', path: `/api/Items?${brackets('filter', f, []).join('&')}` };
  }
  return { method: 'GET', path: `/api/Items?filter=${json(f)}` };
}

// ---------------------------------------------------------------------------------------------
// shop: relations and include

const SHOP = {
  Customers: { fields: ['name', 'email', 'age', 'vip', 'tier', 'since', 'id'], relations: ['orders'] },
  Orders: { fields: ['code', 'total', 'status', 'paid', 'placedAt', 'customerId', 'id'], relations: ['customer', 'lines', 'products'] },
  'order-lines': { fields: ['quantity', 'unitPrice', 'orderId', 'productId', 'id'], relations: ['order', 'product'] },
  catalog: { fields: ['name', 'price', 'inStock', 'category', 'rating', 'id'], relations: ['lines'] },
};
// The model each relation leads to, as a key of SHOP.
const TARGET = { orders: 'Orders', customer: 'Customers', lines: 'order-lines', products: 'catalog', order: 'Orders', product: 'catalog' };

function shopWhere(r, plural) {
  const f = r.pick(SHOP[plural].fields);
  const v = f.endsWith('Id') || f === 'id' ? r.int(0, 9)
    : ['total', 'unitPrice', 'price', 'age', 'rating', 'quantity'].includes(f) ? r.pick([0, 5, 20, 50.5, 100])
    : ['vip', 'paid', 'inStock'].includes(f) ? r.chance(0.5)
    : r.pick(['a', 'b', 'pending', 'shipped', 'basic', 'gold', 'misc', 'tools']);
  return { [f]: r.pick([v, { gt: v }, { lte: v }, { neq: v }, { inq: [v, r.int(0, 5)] }]) };
}

// A random `include` from `plural`, `depth` levels at most.
function include(r, plural, depth) {
  const rels = SHOP[plural].relations;
  const one = () => {
    const rel = r.pick(rels);
    const to = TARGET[rel];
    const nested = depth > 1 && r.chance(0.4) ? include(r, to, depth - 1) : undefined;
    switch (r.int(0, 3)) {
      case 0: return rel;
      case 1: return nested === undefined ? rel : { [rel]: nested };
      default: {
        const scope = {};
        if (r.chance(0.5)) scope.where = shopWhere(r, to);
        if (r.chance(0.4)) scope.order = r.pick(SHOP[to].fields) + r.pick(['', ' DESC']);
        if (r.chance(0.3)) scope.limit = r.int(1, 3);
        if (r.chance(0.15)) scope.skip = r.int(0, 2);
        if (r.chance(0.25)) scope.fields = r.some(SHOP[to].fields, 1, 3);
        if (nested !== undefined) scope.include = nested;
        return { relation: rel, scope };
      }
    }
  };
  if (r.chance(0.7)) return one();
  // Two different relations: LoopBack runs a relation named twice twice, concurrently, and
  // what it attaches then depends on timing (a deviation in docs/COMPATIBILITY.md).
  const a = one();
  const b = one();
  const name = (x) => (typeof x === 'string' ? x : x.relation || Object.keys(x)[0]);
  return name(a) === name(b) ? a : [a, b];
}

function shopFilter(r, plural) {
  const f = { include: include(r, plural, 3) };
  if (r.chance(0.4)) f.where = shopWhere(r, plural);
  if (r.chance(0.3)) f.order = r.pick(SHOP[plural].fields) + r.pick(['', ' DESC']);
  if (r.chance(0.3)) f.limit = r.int(1, 4);
  if (r.chance(0.2)) f.fields = r.some(SHOP[plural].fields, 1, 3);
  return f;
}

async function shopSeed(r, opts, post) {
  const n = Math.max(4, Math.floor(opts.rows / 4));
  for (let i = 0; i < n; i++) {
    const c = { name: `c${i}`, email: `c${i}@x.io` };
    if (r.chance(0.6)) c.age = r.int(18, 80);
    if (r.chance(0.4)) c.vip = r.chance(0.5);
    if (r.chance(0.4)) c.tier = r.pick(['basic', 'gold']);
    await post('/api/Customers', c);
  }
  for (let i = 0; i < n; i++) {
    await post('/api/catalog', { name: `p${i}`, price: r.pick([5, 20, 50.5, 100]), category: r.pick(['misc', 'tools']) });
  }
  for (let i = 0; i < 2 * n; i++) {
    const o = { code: `o${i}`, total: r.pick([0, 5, 20, 50.5, 100]), status: r.pick(['pending', 'shipped']) };
    if (r.chance(0.9)) o.customerId = r.int(1, n + 1); // n + 1: a customer that does not exist
    await post('/api/Orders', o);
  }
  for (let i = 0; i < 3 * n; i++) {
    const l = { quantity: r.int(1, 3), unitPrice: r.pick([5, 20]) };
    if (r.chance(0.95)) l.orderId = r.int(1, 2 * n);
    if (r.chance(0.9)) l.productId = r.int(1, n + 1);
    await post('/api/order-lines', l);
  }
}

function shopRequest(r, opts) {
  const json = (v) => encodeURIComponent(JSON.stringify(v));
  const n = Math.max(4, Math.floor(opts.rows / 4));
  const kind = r.next();
  const headers = { 'Content-Type': 'application/json' };
  if (opts.writes && kind < 0.05) {
    return { method: 'POST', path: `/api/Customers/${r.int(1, n + 1)}/orders`, headers, body: JSON.stringify({ code: 'new', total: r.pick([1, 20]) }) };
  }
  if (opts.writes && kind < 0.08) {
    return { method: 'DELETE', path: `/api/${r.pick(['Orders', 'order-lines', 'Customers'])}/${r.int(1, 2 * n)}` };
  }
  const plural = r.pick(Object.keys(SHOP));
  if (kind < 0.5) return { method: 'GET', path: `/api/${plural}?filter=${json(shopFilter(r, plural))}` };
  if (kind < 0.6) return { method: 'GET', path: `/api/${plural}/${r.int(1, n + 1)}?filter=${json({ include: include(r, plural, 2) })}` };
  if (kind < 0.65) return { method: 'GET', path: `/api/${plural}/findOne?filter=${json(shopFilter(r, plural))}` };
  // Relation routes.
  const route = r.pick([
    ['Customers', 'orders'], ['Orders', 'customer'], ['Orders', 'lines'], ['Orders', 'products'],
    ['order-lines', 'order'], ['order-lines', 'product'], ['catalog', 'lines'],
  ]);
  const [from, rel] = route;
  const to = TARGET[rel];
  const id = r.int(1, 2 * n);
  if (['customer', 'order', 'product'].includes(rel)) return { method: 'GET', path: `/api/${from}/${id}/${rel}` };
  if (kind < 0.8) {
    const f = {};
    if (r.chance(0.5)) f.where = shopWhere(r, to);
    if (r.chance(0.4)) f.order = r.pick(SHOP[to].fields) + r.pick(['', ' DESC']);
    if (r.chance(0.3)) f.limit = r.int(1, 3);
    if (r.chance(0.3)) f.include = include(r, to, 1);
    return { method: 'GET', path: `/api/${from}/${id}/${rel}?filter=${json(f)}` };
  }
  if (kind < 0.9) return { method: 'GET', path: `/api/${from}/${id}/${rel}/count?where=${json(shopWhere(r, to))}` };
  return { method: 'GET', path: `/api/${from}/${id}/${rel}/${r.int(1, 3 * n)}` };
}

// ---------------------------------------------------------------------------------------------
// registry: ids (generated, given, string ids, forceId false), strict "filter", a file store

const REG = {
  People: () => ({ name: 'p', born: '2000-01-02' }),
  Categories: () => ({ name: 'c' }),
  Addresses: () => ({ city: 'x', street: 's' }),
  Countries: () => ({ name: 'n', population: 5 }),
  Tickets: () => ({ title: 't' }),
  Notes: () => ({ text: 'n', due: '2021-01-01' }),
  Memos: () => ({ subject: 's', extra: 1 }),
};
const IDS = [1, 2, 3, 7, 0, -1, 1.5, '2', '02', 'abc', 'NO', 'DE', '', null, true, '1e1', ' 3'];

function regRequest(r, opts) {
  const json = (v) => encodeURIComponent(JSON.stringify(v));
  const headers = { 'Content-Type': 'application/json' };
  const plural = r.pick(Object.keys(REG));
  const data = REG[plural]();
  const id = r.pick(IDS);
  // Country's id property is `code` (an `id` key there is just an undeclared property).
  const idKey = plural === 'Countries' ? 'code' : 'id';
  const withId = (v, d) => ({ [idKey]: v, ...d });
  const urlId = encodeURIComponent(String(id));
  const kind = r.int(0, 11);
  if (!opts.writes && kind < 7) return { method: 'GET', path: `/api/${plural}/${urlId}` };
  switch (kind) {
    case 0: return { method: 'POST', path: `/api/${plural}`, headers, body: JSON.stringify(r.chance(0.5) ? data : withId(id, data)) };
    case 1: return { method: 'PUT', path: `/api/${plural}/${urlId}`, headers, body: JSON.stringify(r.chance(0.5) ? data : withId(r.pick(IDS), data)) };
    case 2: return { method: 'PATCH', path: `/api/${plural}/${urlId}`, headers, body: JSON.stringify(r.chance(0.5) ? { name: 'q' } : withId(r.pick(IDS), { name: 'q' })) };
    case 3: return { method: 'PATCH', path: `/api/${plural}`, headers, body: JSON.stringify(withId(id, data)) };
    case 4: return { method: 'PUT', path: `/api/${plural}`, headers, body: JSON.stringify(withId(id, data)) };
    case 5: return { method: 'DELETE', path: `/api/${plural}/${urlId}` };
    // (Valid elements only: LoopBack half-applies an array with an invalid one, deviation D3.)
    case 6: return { method: 'POST', path: `/api/${plural}`, headers, body: JSON.stringify([data, REG[plural]()]) };
    case 7: return { method: r.pick(['GET', 'HEAD']), path: `/api/${plural}/${urlId}/exists` };
    case 8: return { method: 'GET', path: `/api/${plural}/${urlId}?filter=${json({ fields: ['id'] })}` };
    case 9: return { method: 'GET', path: `/api/${plural}?filter=${json({ where: withId(r.chance(0.5) ? id : { inq: [id, r.pick(IDS)] }, {}) })}` };
    case 10: return { method: 'GET', path: `/api/${plural}/count?where=${json(withId({ gt: r.pick(IDS) }, {}))}` };
    default: return { method: 'GET', path: `/api/${plural}/findOne?filter=${json({ where: withId(id, {}) })}` };
  }
}

async function regSeed(r, opts, post) {
  for (const plural of Object.keys(REG)) {
    for (let i = 0; i < 3; i++) {
      const d = REG[plural]();
      if (plural === 'Countries') d.code = ['NO', 'SE', 'DE'][i];
      await post(`/api/${plural}`, d);
    }
  }
}

const TARGETS = {
  inventory: {
    app: path.join(rec.ROOT, 'tests', 'conformance', 'apps', 'inventory'),
    seed: async (r, opts, post) => {
      for (let i = 0; i < opts.rows; i++) await post('/api/Items', row(r, i));
    },
    request,
    collections: ['/api/Items'],
  },
  shop: {
    app: path.join(rec.ROOT, 'examples', 'shop'),
    seed: shopSeed,
    request: shopRequest,
    collections: ['/api/Customers', '/api/Orders', '/api/order-lines', '/api/catalog'],
  },
  registry: {
    app: path.join(rec.ROOT, 'tests', 'conformance', 'apps', 'registry'),
    seed: regSeed,
    request: regRequest,
    collections: Object.keys(REG).map((p) => `/api/${p}`),
  },
};

// ---------------------------------------------------------------------------------------------
// servers

async function startOxbow(binary, appDir) {
  const port = await rec.freePort();
  const child = spawn(binary, ['serve', appDir, '--port', String(port), '--host', '127.0.0.1'], {
    stdio: ['ignore', 'ignore', 'inherit'],
    detached: true,
  });
  rec.children.add(child);
  child.exited = new Promise((resolve) => child.once('exit', (code, signal) => {
    rec.children.delete(child);
    child.exitInfo = { code, signal };
    resolve(child.exitInfo);
  }));
  for (let i = 0; i < 100; i++) {
    if (child.exitInfo) throw new Error(`oxbow exited during boot: ${JSON.stringify(child.exitInfo)}`);
    if (await rec.canConnect(port)) return { child, port };
    await rec.sleep(50);
  }
  throw new Error('oxbow did not start');
}

// Moves oxbow's copy of the app to `connector`; the schema to drop afterwards, if any.
function useConnector(appDir, opts) {
  const file = path.join(appDir, 'server', 'datasources.json');
  const ds = JSON.parse(fs.readFileSync(file, 'utf8'));
  let schema = null;
  if (opts.connector === 'sqlite') {
    ds.db = { name: 'db', connector: 'sqlite', file: path.join(appDir, 'fuzz.sqlite') };
  } else if (opts.connector === 'postgresql') {
    const url = process.env.OXBOW_TEST_POSTGRES;
    if (!url) throw new Error('--connector postgresql needs OXBOW_TEST_POSTGRES');
    schema = `fuzz_${opts.seed}`;
    dropSchema(url, schema);
    ds.db = { name: 'db', connector: 'postgresql', url, schema };
  } else if (opts.connector !== 'memory') {
    throw new Error(`--connector ${opts.connector}: memory, sqlite or postgresql`);
  }
  fs.writeFileSync(file, JSON.stringify(ds, null, 2));
  return schema;
}

function dropSchema(url, schema) {
  const r = spawnSync('psql', [url, '-qc', `DROP SCHEMA IF EXISTS ${schema} CASCADE`], { stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`psql could not drop schema ${schema}`);
}

function same(a, b) {
  return a.status === b.status && a.body === b.body
    && (a.headers['content-type'] || '') === (b.headers['content-type'] || '');
}

async function main() {
  const opts = args();
  if (!fs.existsSync(opts.oxbow)) throw new Error(`${opts.oxbow} missing: cargo build --release -p oxbow-cli`);
  const target = TARGETS[opts.app];
  if (!target) throw new Error(`--app ${opts.app}: ${Object.keys(TARGETS).join(' or ')}`);
  rec.ensureRig();
  const lbDir = rec.prepareApp(target.app);
  const oxDir = rec.prepareApp(target.app);
  const schema = useConnector(oxDir, opts);
  const logFile = path.join(opts.out, `lb3-${opts.seed}.log`);
  fs.mkdirSync(opts.out, { recursive: true });
  const lb = await rec.startServer(lbDir, fs.createWriteStream(logFile));
  const ox = await startOxbow(opts.oxbow, oxDir);
  const r = prng(opts.seed);
  r.wildOrder = opts.wildOrder;
  const mismatches = [];
  const lb3Failed = [];
  let sent = 0;
  const compare = async (step) => {
    sent++;
    const [a, b] = [await rec.play(lb.port, step), await rec.play(ox.port, step)];
    if (same(a, b)) return true;
    if (a.status === 500 && b.status !== 500) {
      // LoopBack failed (a TypeError on a value it cannot match, …): oxbow answers instead;
      // each such class is listed in docs/COMPATIBILITY.md.
      lb3Failed.push({ step, oxbow: { status: b.status, body: b.body } });
      return true;
    }
    mismatches.push({ step, lb3: { status: a.status, body: a.body }, oxbow: { status: b.status, body: b.body } });
    console.log(`\n#${sent} ${step.method} ${decodeURIComponent(step.path)}${step.body ? ` ${step.body}` : ''}`);
    console.log(`  LB3   ${a.status} ${String(a.body).slice(0, 400)}`);
    console.log(`  oxbow ${b.status} ${String(b.body).slice(0, 400)}`);
    return false;
  };
  const post = (p, body) => compare({ method: 'POST', path: p, headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  await target.seed(r, opts, post);
  const stateAgrees = async () => {
    for (const c of target.collections) if (!(await compare({ method: 'GET', path: c }))) return false;
    return true;
  };
  for (let i = 0; i < opts.count; i++) {
    const step = target.request(r, opts);
    if (opts.until && sent + 1 >= opts.until) break;
    await compare(step);
    // (A write LoopBack failed with a 500 and oxbow made leaves the stores apart too.)
    if (step.method !== 'GET' && !(await stateAgrees())) {
      console.log(`  (the stores differ after #${sent - 1} ${step.method} ${decodeURIComponent(step.path)} ${step.body}: stopping)`);
      break;
    }
  }
  if (opts.serve) {
    console.log(`LoopBack 3: http://127.0.0.1:${lb.port}/api  oxbow: http://127.0.0.1:${ox.port}/api  (Ctrl-C ends)`);
    await new Promise(() => {});
  }
  await Promise.all([rec.stopServer(lb.child), rec.stopServer(ox.child)]);
  if (schema) dropSchema(process.env.OXBOW_TEST_POSTGRES, schema);
  const out = path.join(opts.out, `mismatches-${opts.seed}.json`);
  fs.writeFileSync(out, JSON.stringify({ mismatches, lb3Failed }, null, 2) + '\n');
  console.log(`\nseed ${opts.seed} (${opts.connector}): ${sent} requests, ${mismatches.length} answered differently (${out}); ` +
    `${lb3Failed.length} more where LoopBack 3 answered 500 and oxbow did not`);
  if (mismatches.length) process.exitCode = 1;
}

main().catch((e) => {
  console.error(e.stack || e);
  process.exit(2);
});
