// Drives a real headless Chromium against the default app's live page (client/index.html):
// a record created through the API appears on the page; after the page drops its connection,
// a record created meanwhile appears when it reconnects (resume with lastEventId).
// Usage: node tests/browser/live-list.mjs BASE_URL [SCREENSHOT.png]
import { chromium } from 'playwright-core';

const base = process.argv[2];
const shot = process.argv[3];
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

async function create(foo) {
  const r = await fetch(`${base}/api/MyModels`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ foo }),
  });
  if (r.status !== 200) throw new Error(`create ${foo}: ${r.status} ${await r.text()}`);
  return r.json();
}

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(10_000);
  await page.goto(`${base}/index.html`);
  await page.waitForSelector('#status.live');
  await page.waitForSelector('li .foo:text-is("bar")');

  const live = await create('from-the-api');
  await page.waitForSelector(`li[data-id="${live.id}"] .foo:text-is("from-the-api")`);

  await page.evaluate(() => window.liveList.disconnect());
  const missed = await create('while-away');
  await page.evaluate(() => window.liveList.reconnect());
  await page.waitForSelector(`li[data-id="${missed.id}"] .foo:text-is("while-away")`);
  const lastId = await page.evaluate(() => window.liveList.lastEventId());
  if (!lastId) throw new Error('the page never saw an event id');

  if (shot) await page.screenshot({ path: shot });
  const items = await page.$$eval('li .foo', els => els.map(e => e.textContent));
  console.log(`ok: the page shows ${JSON.stringify(items)}; last event id ${lastId}`);
} finally {
  await browser.close();
}
