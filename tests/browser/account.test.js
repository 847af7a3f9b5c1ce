// The account element for a plan that bills overage past its allowance: the next invoice as Stripe previews it, with the
// overage used so far. Billing's answers are stubbed (as in pricing.test.js); the E2E specs check the figures themselves.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, shot, waitForText, gateway } from './harness.js';

let browser, page;
const plans = {
  plans: [
    { id: 'free', name: 'Free', description: '', trialDays: 0, prices: [], features: [], limits: {}, archived: false,
      meters: [{ meter: 'chat.message', limit: 50, window: 'day', overage: 'block', tokensPerUnit: null, overageUnitAmount: null }] },
    { id: 'pro', name: 'Pro', description: '', trialDays: 0, features: [], limits: {}, archived: false,
      prices: [{ interval: 'month', intervalCount: 1, amount: 1500, currency: 'usd' }],
      meters: [{ meter: 'chat.message', limit: 500, window: 'day', overage: 'bill', tokensPerUnit: null, overageUnitAmount: 0.5 }] },
  ],
};

before(async () => {
  ({ browser, page } = await launch());
  await page.route('**/api/plans', (r) => r.fulfill({ json: plans }));
  await page.route('**/api/subscriptions/me', (r) => r.fulfill({ json: { planId: 'pro', status: 'active', interval: 'month', intervalCount: 1,
    currentPeriodEnd: '2030-01-01T00:00:00Z', cancelAtPeriodEnd: false, trialEnd: null, graceUntil: null, unlimited: false, scheduledChange: null } }));
  await page.route('**/api/subscriptions/me/upcoming-invoice', (r) => r.fulfill({ json: { amountDue: 1502, currency: 'usd', billedAt: '2030-01-01T00:00:00Z',
    lines: [{ kind: 'plan', description: '1 × Pro', amount: 1500, quantity: 1, periodStart: '2030-01-01T00:00:00Z', periodEnd: '2030-02-01T00:00:00Z' },
      { kind: 'overage', description: '3 × Overage', amount: 2, quantity: 3, periodStart: '2029-12-01T00:00:00Z', periodEnd: '2030-01-01T00:00:00Z' }] } }));
  await page.route('**/api/payments/me', (r) => r.fulfill({ json: { items: [] } }));
  await page.route('**/api/wallet/me/transactions?*', (r) => r.fulfill({ json: { items: [] } }));
  await page.route('**/account-test.html', (r) => r.fulfill({ contentType: 'text/html', body: `<!doctype html><html lang="en">
    <head><script type="module" src="/elements/billing.js"></script></head>
    <body style="font-family:sans-serif;max-width:50rem;margin:2rem auto"><h1>Account</h1>
    <billing-account token="stub-token"></billing-account></body></html>` }));
  await page.goto(`${gateway}/account-test.html`);
});
after(async () => browser?.close());

test('a plan billing overage shows the next invoice with the overage used so far', async () => {
  const account = page.locator('billing-account');
  await waitForText(account.locator('[data-role=upcoming-invoice]'), /^\$15\.02 on Jan 1, 2030 \(includes \$0\.02 overage so far\)$/);
  await shot(page, '13-account-upcoming-invoice');
});

test('a meter whose overage is billed is not shown as used up past its allowance', async () => {
  const usage = { meters: [{ meter: 'chat.message', limit: 500, used: 510, remaining: 0, window: 'day', resetsAt: '2030-01-01T00:00:00Z',
    unlimited: false, overage: 'bill', overageUnitAmount: 0.5 }], tokens: { balance: 0 } };
  await page.route('**/api/usage/me', (r) => r.fulfill({ json: usage }));
  await page.route('**/api/wallet/me', (r) => r.fulfill({ json: { balance: 0 } }));
  await page.route('**/api/token-packs', (r) => r.fulfill({ json: { packs: [{ id: 'small', name: 'Small', tokens: 1000, amount: 500, currency: 'usd' }] } }));
  await page.route('**/usage-test.html', (r) => r.fulfill({ contentType: 'text/html', body: `<!doctype html><html lang="en">
    <head><script type="module" src="/elements/billing.js"></script></head>
    <body style="font-family:sans-serif;max-width:50rem;margin:2rem auto"><h1>Usage</h1>
    <billing-usage-meter token="stub-token" meter="chat.message"></billing-usage-meter>
    <billing-upgrade-prompt token="stub-token" meter="chat.message"></billing-upgrade-prompt></body></html>` }));
  await page.goto(`${gateway}/usage-test.html`);

  const meter = page.locator('billing-usage-meter');
  await waitForText(meter.locator('[data-role=label]'), /^500 messages included · 10 more billed$/);
  assert.equal(await meter.locator('[part=meter]').getAttribute('data-state'), 'over');
  const prompt = page.locator('billing-upgrade-prompt');
  await waitForText(prompt.locator('h2'), /past your plan's 500 messages/);
  assert.equal(await prompt.locator('section').getAttribute('data-code'), 'overage_billed', 'not quota_exhausted: the user is not blocked');
  assert.equal(await prompt.locator('[data-action=buy]').count(), 0, 'tokens do not pay for a billed meter');
});

test('a suspended account is told to update its payment method, not to buy tokens', async () => {
  // Payment past due beyond grace: Usage answers access "suspended" (every consume is refused with payment_past_due).
  const usage = { access: 'suspended', meters: [{ meter: 'chat.message', limit: 500, used: 20, remaining: 0, window: 'day',
    resetsAt: '2030-01-01T00:00:00Z', unlimited: false, overage: 'block', overageUnitAmount: null }], tokens: { balance: 5000 } };
  await page.route('**/api/usage/me', (r) => r.fulfill({ json: usage }));
  await page.goto(`${gateway}/usage-test.html`);

  const prompt = page.locator('billing-upgrade-prompt');
  await waitForText(prompt.locator('h2'), /^Your payment is past due$/);
  assert.equal(await prompt.locator('section').getAttribute('data-code'), 'payment_past_due');
  assert.equal(await prompt.locator('[data-action=portal]').count(), 1, 'the way out: the payment method');
  assert.equal(await prompt.locator('[data-action=buy]').count(), 0, 'tokens do not lift a suspension');
});

test('after a paid checkout, the portal returns to the page without ?checkout=, and a reload shows no second success', async () => {
  let portalBody = null;
  await page.route('**/api/billing-portal', async (r) => { portalBody = r.request().postDataJSON(); await r.fulfill({ json: { url: `${gateway}/portal-stub` } }); });
  await page.route('**/return-test.html*', (r) => r.fulfill({ contentType: 'text/html', body: `<!doctype html><html lang="en">
    <head><script type="module" src="/elements/billing.js"></script></head>
    <body><billing-payment-result token="stub-token"></billing-payment-result><billing-account token="stub-token"></billing-account></body></html>` }));
  await page.goto(`${gateway}/return-test.html?tab=plan&checkout=success&session_id=cs_test_1`);
  await page.getByRole('heading', { name: /Payment received/ }).waitFor();
  assert.equal(new URL(page.url()).searchParams.get('checkout'), null, 'taken out of the address bar once read');
  assert.equal(new URL(page.url()).searchParams.get('tab'), 'plan', 'the page\'s own parameters stay');

  // A page that opens Stripe's pages itself (a new tab) cancels the navigation: the button works again afterwards.
  await page.evaluate(() => window.addEventListener('billing:checkout', (e) => e.preventDefault()));
  const portal = page.locator('billing-account').getByRole('button', { name: 'Manage payment methods' });
  await portal.click();
  await page.waitForFunction(() => true);
  assert.ok(portalBody, 'the portal was asked for');
  assert.equal(new URL(portalBody.returnUrl).searchParams.get('checkout'), null, portalBody.returnUrl);
  await page.waitForFunction(() => !document.querySelector('billing-account').shadowRoot.querySelector('[data-action=portal]').disabled,
    null, { timeout: 10_000 });

  await page.reload();
  await page.locator('billing-account').getByRole('button', { name: 'Manage payment methods' }).waitFor();
  assert.equal(await page.getByRole('heading', { name: /Payment received/ }).count(), 0, 'a reload is no new payment');
});
