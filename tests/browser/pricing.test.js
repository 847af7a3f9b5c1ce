// The pricing table with the quiz maker's catalog (Pro $5/month or $50/year): the interval switch, the yearly saving,
// keyboard use, and the plan-change confirmation with the prorated amount. Billing's answers are stubbed here so the
// table can be checked on any running catalog; the demo story checks it against the real services.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, shot, waitForText, gateway } from './harness.js';

let browser, page;
const plans = {
  plans: [
    { id: 'free', name: 'Free', description: 'Play and host quizzes; no AI generations.', trialDays: 0, prices: [],
      meters: [{ meter: 'ai.generation', limit: 0, window: 'month' }], features: ['quizzes'], limits: { projects: null } },
    { id: 'pro', name: 'Pro', description: '250 AI quiz generations a month.', trialDays: 0,
      prices: [{ interval: 'month', intervalCount: 1, amount: 500, currency: 'usd' }, { interval: 'year', intervalCount: 1, amount: 5000, currency: 'usd' }],
      meters: [{ meter: 'ai.generation', limit: 250, window: 'month', overage: 'block', tokensPerUnit: null, overageUnitAmount: null },
        { meter: 'chat.message', limit: 500, window: 'day', overage: 'bill', tokensPerUnit: null, overageUnitAmount: 0.5 }],
      features: ['quizzes', 'ai_access'], limits: { projects: null } },
  ],
};

before(async () => {
  ({ browser, page } = await launch());
  await page.route('**/api/plans', (r) => r.fulfill({ json: plans }));
  await page.route('**/api/subscriptions/me', (r) => r.fulfill({ json: { planId: 'pro', status: 'active', interval: 'month', intervalCount: 1,
    currentPeriodEnd: '2030-01-01T00:00:00Z', cancelAtPeriodEnd: false, trialEnd: null, graceUntil: null, unlimited: false } }));
  await page.route('**/api/subscriptions/me/change-preview?*', (r) => r.fulfill({ json: { planId: 'pro', interval: 'year', intervalCount: 1,
    kind: 'upgrade', effectiveAt: '2029-12-01T00:00:00Z', amountDueNow: 4612, currency: 'usd', nextAmount: 5000 } }));
  // A product page of its own, served at the gateway's origin (the test answers it; nothing is added to the gateway).
  await page.route('**/pricing-test.html', (r) => r.fulfill({ contentType: 'text/html', body: `<!doctype html><html lang="en">
    <head><script type="module" src="/elements/billing.js"></script></head>
    <body style="font-family:sans-serif;max-width:50rem;margin:2rem auto"><h1>Pricing</h1>
    <billing-pricing-table token="stub-token"></billing-pricing-table></body></html>` }));
  await page.goto(`${gateway}/pricing-test.html`);
});
after(async () => browser?.close());

test('monthly and yearly prices with the yearly saving; the current plan is marked', async () => {
  const table = page.locator('billing-pricing-table');
  await waitForText(table.locator('li[data-plan=pro] [part=price]'), /\$5\.00\s*\/ month/);
  await waitForText(table.locator('[part=saving]'), /^Save 17%$/);
  await waitForText(table.locator('[aria-current=true]'), /Pro[\s\S]*Current plan/);
  await shot(page, '10-pricing-monthly');

  await table.getByRole('radio', { name: /Yearly/ }).check();
  await waitForText(table.locator('li[data-plan=pro] [part=price]'), /\$50\.00\s*\/ year/);
  assert.equal(await table.locator('[aria-current=true]').count(), 0, 'the monthly plan is not current on the yearly tab');
  await shot(page, '11-pricing-yearly');
});

test('a meter billed past its allowance says what one more costs', async () => {
  const pro = page.locator('billing-pricing-table li[data-plan=pro]');
  await waitForText(pro.locator('[part=features] li', { hasText: 'messages' }), /^500 messages a day, then \$0\.005 each$/);
  await waitForText(pro.locator('[part=features] li', { hasText: 'generations' }), /^250 generations a month$/);
});

test('the interval switch works from the keyboard', async () => {
  const table = page.locator('billing-pricing-table');
  await table.getByRole('radio', { name: /Yearly/ }).focus();
  await page.keyboard.press('ArrowLeft');
  await waitForText(table.locator('li[data-plan=pro] [part=price]'), /\$5\.00\s*\/ month/);
  await page.keyboard.press('ArrowRight');
  await waitForText(table.locator('li[data-plan=pro] [part=price]'), /\$50\.00\s*\/ year/);
});

test('changing plan shows the prorated amount from the preview before confirming', async () => {
  const table = page.locator('billing-pricing-table');
  await table.getByRole('button', { name: 'Change plan to Pro' }).click();
  const dialog = table.getByRole('dialog');
  await waitForText(dialog, /You pay \$46\.12 now \(prorated for the rest of this period\), then \$50\.00 per year/);
  assert.equal(await table.getByRole('button', { name: 'Confirm change' }).evaluate((b) => b === b.getRootNode().activeElement), true,
    'focus moves to the confirmation');
  await shot(page, '12-change-preview');
  await table.getByRole('button', { name: 'Keep my plan' }).click();
  assert.equal(await dialog.count(), 0);
});

test('amounts are in Stripe\'s minor unit of each currency: cents, yen, forint hundredths, dinar thousandths', async () => {
  // Intl says 0 fraction digits for HUF (and ISK, IDR, COP, PKR), but Stripe counts their amounts in hundredths.
  const formatted = await page.evaluate(async () => {
    const { formatMoney, formatUnitPrice } = await import('/elements/billing.js');
    return {
      usd: formatMoney(500, 'usd'), jpy: formatMoney(500, 'jpy'), huf: formatMoney(150000, 'huf'), kwd: formatMoney(1500, 'kwd'),
      unitUsd: formatUnitPrice(0.5, 'usd'), unitHuf: formatUnitPrice(50, 'huf'),
    };
  });
  assert.match(formatted.usd, /5\.00/);
  assert.match(formatted.jpy, /500/);
  assert.doesNotMatch(formatted.jpy, /5\.00/);
  assert.match(formatted.huf, /1,500/, formatted.huf);
  assert.doesNotMatch(formatted.huf, /150,000/);
  assert.match(formatted.kwd, /1\.500/, formatted.kwd);
  assert.match(formatted.unitUsd, /0\.005/, formatted.unitUsd);
  assert.match(formatted.unitHuf, /0\.5/, formatted.unitHuf);
});
