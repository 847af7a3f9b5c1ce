// The account element for a plan that bills overage past its allowance: the next invoice as Stripe previews it, with the
// overage used so far. Billing's answers are stubbed (as in pricing.test.js); the E2E specs check the figures themselves.
import { test, before, after } from 'node:test';
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
