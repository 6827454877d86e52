// The console in a real browser: headless Chromium driven by Playwright, against a real
// `switchboard serve` started by tests/it/console.rs (which passes what it needs in SB_*).
// Exits 0 when every step held; otherwise prints the step that failed and exits 1.

import { chromium } from 'playwright-core';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const URL = env('SB_URL');
const TOKEN = env('SB_TOKEN');
const SECRET = env('SB_SECRET');
const PLUGINS = env('SB_PLUGINS');
const ARTIFACTS = env('SB_ARTIFACTS');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

let step = 'starting';
const check = (ok, what) => {
  if (!ok) throw new Error(`${step}: ${what}`);
};

// A Standard Webhooks delivery to /hooks/test.
async function hook(id, op) {
  const body = JSON.stringify(op);
  const ts = Math.floor(Date.now() / 1000);
  const key = Buffer.from(SECRET.replace(/^whsec_/, ''), 'base64');
  const sig = crypto.createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64');
  const r = await fetch(`${URL}/hooks/test`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(ts),
      'webhook-signature': `v1,${sig}`,
    },
    body,
  });
  check(r.status === 202, `webhook ${id} answered ${r.status}`);
  return (await r.json()).event_id;
}

const statuses = (page) =>
  page.$$eval('#runs tbody tr', (rows) => rows.map((r) => r.getAttribute('data-status')));
const count = (list, s) => list.filter((x) => x === s).length;

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
try {
  const context = await browser.newContext();
  const page = await context.newPage();
  page.setDefaultTimeout(30_000);

  step = 'sign in';
  await page.goto(`${URL}/console`);
  check(page.url().endsWith('/console/login'), `not sent to sign in: ${page.url()}`);
  await page.fill('input[name=token]', 'not-the-token');
  await page.click('button[type=submit]');
  check((await page.content()).includes('not the admin token'), 'a wrong token was not refused');
  await page.fill('input[name=token]', TOKEN);
  await page.click('button[type=submit]');
  await page.waitForURL('**/console/runs');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'sb_session');
  check(session && session.httpOnly && session.sameSite === 'Strict', `cookie: ${JSON.stringify(cookies)}`);

  step = 'webhooks appear (live, without a reload)';
  await hook('b1', { op: 'kv-set', key: 'a', value: 'v' });
  await hook('b2', { op: 'kv-set', key: 'b', value: 'v' });
  const failedEvent = await hook('b3', { op: 'fail-unless', key: 'fix' });
  await hook('b4', { op: 'loop' });
  await hook('b5', { op: 'loop' });
  await page.waitForFunction(() => {
    const s = [...document.querySelectorAll('#runs tbody tr')].map((r) => r.getAttribute('data-status'));
    return s.length === 5 && s.filter((x) => x === 'dead').length === 2 && s.includes('failed');
  });
  const seen = await statuses(page);
  check(count(seen, 'succeeded') === 2, `statuses: ${seen}`);
  const ids = await page.$$eval('#runs tbody td.delivery', (ts) => ts.map((t) => t.textContent).sort());
  check(ids.join() === 'b1,b2,b3,b4,b5', `delivery ids: ${ids}`);

  step = 'the chart counts the runs by outcome';
  await page.reload();
  const bars = await page.$$eval('#chart rect title', (ts) => ts.map((t) => t.textContent));
  check(bars.includes('2 succeeded') && bars.includes('3 failed or dead'), `chart: ${bars}`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'runs.png'), fullPage: true });

  step = 'filter by status and recipe';
  await page.selectOption('select[name=status]', 'failed');
  await page.selectOption('select[name=plugin]', 'probe');
  await page.click('form.filters button[type=submit]');
  await page.waitForURL(/status=failed/);
  const filtered = await statuses(page);
  check(filtered.length === 1 && filtered[0] === 'failed', `filtered: ${filtered}`);

  step = 'open the failed run, reveal its payload';
  await page.click(`#runs tbody tr a:text("${failedEvent}")`);
  await page.waitForSelector('#reveal');
  check((await page.$('#payload')) === null, 'the payload shows before reveal');
  check((await page.textContent('#reason')).includes('fix is not set yet'), 'the error is shown');
  await page.click('#reveal');
  await page.waitForSelector('#payload');
  check((await page.textContent('#payload')).includes('fail-unless'), 'the revealed payload');
  const runUrl = page.url().replace(/\/reveal$/, '');

  step = 'replay it and see it succeed';
  await hook('b6', { op: 'kv-set', key: 'fix', value: 'now' });
  await page.click('#replay');
  await page.waitForSelector('#note');
  check((await page.textContent('#note')).includes('Queued again'), 'replay queued');
  let status = '';
  for (let i = 0; i < 100 && status !== 'succeeded'; i++) {
    await page.goto(runUrl);
    status = (await page.textContent('#status')).trim();
    if (status !== 'succeeded') await page.waitForTimeout(100);
  }
  check(status === 'succeeded', `after replay: ${status}`);
  const timeline = await page.$$eval('#timeline tr[data-outcome]', (rs) => rs.map((r) => r.getAttribute('data-outcome')));
  check(timeline.join() === 'failed,succeeded', `attempts timeline: ${timeline}`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'run.png'), fullPage: true });

  step = 'bulk replay of the dead runs, after a dry-run count';
  await page.goto(`${URL}/console/runs?status=dead`);
  await page.click('#bulk');
  await page.waitForSelector('#matched');
  check((await page.textContent('#matched')).includes('2 finished run(s) match'), await page.textContent('#matched'));
  await page.click('#confirm');
  await page.waitForSelector('#replayed');
  check((await page.textContent('#replayed')).includes('Replayed 2 run(s)'), await page.textContent('#replayed'));

  step = "a run's vendor requests, with status and duration";
  const calling = await hook('b8', { op: 'http', connection: 'ghl', path: '/contacts/missing' });
  await page.goto(`${URL}/console/runs`);
  await page.waitForFunction(
    (sel) => document.querySelector(sel)?.getAttribute('data-status') === 'succeeded',
    `#runs tbody tr[data-run="${calling}.probe"]`,
  );
  await page.goto(`${URL}/console/runs/${calling}.probe`);
  const calls = await page.$$eval('#calls tr[data-status]', (rs) =>
    rs.map((r) => [...r.querySelectorAll('td')].map((t) => t.textContent.trim())),
  );
  check(calls.length === 1, `vendor requests: ${JSON.stringify(calls)}`);
  const [attempt, op, connection, vendor, method, code, took] = calls[0];
  check(
    attempt === '1' && op === 'vendor-http.send' && connection === 'ghl' && vendor === 'gohighlevel' && method === 'GET',
    `vendor request: ${calls[0]}`,
  );
  check(/^4\d\d$/.test(code) && /^\d+ ms$/.test(took), `status and duration: ${calls[0]}`);

  step = 'a bad plugin file shows its load error';
  fs.writeFileSync(path.join(PLUGINS, 'broken.wasm'), 'this is not a component');
  let shown = false;
  for (let i = 0; i < 100 && !shown; i++) {
    await page.goto(`${URL}/console/recipes`);
    const errors = await page.$('#load-errors');
    shown = errors !== null && (await errors.textContent()).includes('broken.wasm');
    if (!shown) await page.waitForTimeout(100);
  }
  check(shown, 'broken.wasm is not listed with its error');

  step = 'pause a recipe: its runs wait; resume: they run';
  await page.goto(`${URL}/console/recipes`);
  await page.click('tr[data-recipe=probe] button');
  await page.waitForSelector('tr[data-recipe=probe] .state:text("paused")');
  const heldEvent = await hook('b7', { op: 'kv-set', key: 'held', value: 'v' });
  await page.goto(`${URL}/console/runs`);
  await page.waitForTimeout(500);
  const heldRow = `#runs tbody tr[data-run="${heldEvent}.probe"]`;
  check((await page.getAttribute(heldRow, 'data-status')) === 'queued', 'a paused recipe ran');
  await page.goto(`${URL}/console/recipes`);
  await page.click('tr[data-recipe=probe] button');
  await page.waitForSelector('tr[data-recipe=probe] .state:text("running")');
  await page.goto(`${URL}/console/runs`);
  await page.waitForFunction(
    (sel) => document.querySelector(sel)?.getAttribute('data-status') === 'succeeded',
    heldRow,
  );

  step = 'a paused recipe whose file is gone is listed, and can be resumed';
  await page.goto(`${URL}/console/recipes`);
  await page.click('tr[data-recipe=probe] button');
  await page.waitForSelector('tr[data-recipe=probe] .state:text("paused")');
  const probeFile = path.join(PLUGINS, 'probe.wasm');
  const probeBytes = fs.readFileSync(probeFile);
  fs.unlinkSync(probeFile);
  let listed = false;
  for (let i = 0; i < 100 && !listed; i++) {
    await page.goto(`${URL}/console/recipes`);
    listed =
      (await page.$('#recipes tr[data-recipe=probe]')) === null &&
      (await page.$('#paused-not-loaded tr[data-recipe=probe] button')) !== null;
    if (!listed) await page.waitForTimeout(100);
  }
  check(listed, 'a paused recipe with no file is not listed with a Resume button');
  await page.click('#paused-not-loaded tr[data-recipe=probe] button');
  await page.waitForURL(`${URL}/console/recipes`);
  check((await page.$('#paused-not-loaded')) === null, 'resumed, it is still listed as paused');
  const plugins = await (
    await fetch(`${URL}/admin/plugins`, { headers: { authorization: `Bearer ${TOKEN}` } })
  ).json();
  check(!plugins.paused.includes('probe'), `still paused in the store: ${JSON.stringify(plugins.paused)}`);
  fs.writeFileSync(probeFile, probeBytes);

  step = 'requests without the session or the CSRF token are refused';
  const runId = runUrl.split('/').pop();
  const anonymous = await fetch(`${URL}/console/runs/${runId}/replay`, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: 'csrf=anything',
  });
  check(anonymous.status === 401, `without a session: ${anonymous.status}`);
  const forged = await page.request.post(`${URL}/console/runs/${runId}/replay`, { form: { csrf: 'forged' } });
  check(forged.status() === 403, `with a forged CSRF token: ${forged.status()}`);
  const none = await page.request.post(`${URL}/console/replay`, { form: { status: 'dead', confirm: 'yes' } });
  check(none.status() === 403, `without a CSRF token: ${none.status()}`);

  step = 'no secret in any page, and none kept in a cache';
  for (const p of ['/console/runs', runUrl, '/console/recipes', '/console/connections']) {
    const answer = await page.goto(p.startsWith('http') ? p : `${URL}${p}`);
    check(answer.headers()['cache-control'] === 'no-store', `${p} may be cached`);
    check(!(await page.content()).includes(TOKEN), `${p} shows the admin token`);
  }
  console.log('console: every step held');
} catch (e) {
  console.error(`console test failed at "${step}": ${e.stack || e}`);
  process.exitCode = 1;
} finally {
  await browser.close();
}
