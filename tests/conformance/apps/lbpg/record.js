// Re-records this app's fixtures with the real LoopBack 3 and loopback-connector-postgresql:
//
//   psql postgresql://postgres@127.0.0.1:5432/test -c 'DROP SCHEMA IF EXISTS lbcompat CASCADE; CREATE SCHEMA lbcompat'
//   NODE_PATH=target/lb3rig/node_modules node tests/conformance/apps/lbpg/record.js > tests/conformance/apps/lbpg/expected.json
//   pg_dump -d test -n lbcompat --no-owner --no-privileges --inserts > tests/conformance/apps/lbpg/tables.sql
//
// (target/lb3rig is bench/postgres.sh's rig, with loopback-connector-postgresql@5 installed.)
// LoopBack migrates the models of models/ into schema `lbcompat` (its own table and column
// names and types), writes the rows below through its API, and prints what its REST API
// would answer for the queries the oxbow test asks (`lbpg::loopback_postgres_tables_are_served_as_they_are`).
const path = require('path');
const loopback = require('loopback');
const url = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test';
const ds = loopback.createDataSource('db', {connector: require('loopback-connector-postgresql'), url});
const load = (file) => {
  const def = require(path.join(__dirname, 'models', file));
  return ds.createModel(def.name, def.properties, {postgresql: {schema: 'lbcompat'}, relations: def.relations});
};
const Customer = load('customer.json');
const Order = load('order.json');
Customer.hasMany(Order, {as: 'orders', foreignKey: 'customerId'});
(async () => {
  await ds.automigrate();
  const a = await Customer.create({name: 'Ann', email: 'ann@x.io', since: '2024-02-29T10:20:30.456Z', vip: true, visits: 3});
  const b = await Customer.create({name: 'Bob', since: '2023-01-01T00:00:00.000Z', vip: false});
  await Order.create({code: 'A1', total: 10, placedAt: '2024-03-01T00:00:00.000Z', customerId: a.id});
  await Order.create({code: 'A2', total: 25, placedAt: '2024-03-02T12:00:00.000Z', customerId: a.id});
  await Order.create({code: 'B1', total: 7, customerId: b.id});
  const json = (v) => JSON.parse(JSON.stringify(v));
  const out = {
    'GET /api/Customers?filter={"include":"orders","order":"id ASC"}':
      json(await Customer.find({include: 'orders', order: 'id ASC'})),
    'GET /api/Orders?filter={"where":{"placedAt":{"gt":"2024-03-01T06:00:00.000Z"}}}':
      json(await Order.find({where: {placedAt: {gt: '2024-03-01T06:00:00.000Z'}}})),
    'GET /api/Orders?filter={"order":"placedAt DESC","where":{"placedAt":{"neq":null}}}':
      json(await Order.find({order: 'placedAt DESC', where: {placedAt: {neq: null}}})),
  };
  console.log(JSON.stringify(out, null, 2));
  ds.disconnect();
})().catch((e) => { console.error(e); process.exit(1); });
