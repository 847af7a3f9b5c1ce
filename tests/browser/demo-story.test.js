// The demo story a person clicks through at /demo, on the learning community's catalog (3 free AI uploads, Community
// Pro with 100 a month, token packs that pay once the allowance is used up): sign in, see pricing, pay on the
// simulator's checkout page, come back to the success page, generate, watch the meter fall, hit the limit, see the
// upgrade prompt, buy a token pack, continue. Every assertion is about what is on the screen.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, shot, waitForText, gateway } from './harness.js';

let browser, page, errors;
const user = `ada-${Date.now().toString(36)}`;

before(async () => ({ browser, page, errors } = await launch()));
after(async () => browser?.close());

test('the demo story: subscribe, generate to the limit, buy tokens, continue', async (t) => {
  const meter = page.locator('#meter');
  const prompt = page.locator('#prompt');
  const pricing = page.locator('#pricing-table');

  await t.test('signing in as any local user', async () => {
    await page.goto(`${gateway}/demo`);
    await page.getByRole('heading', { name: 'Sign in to the demo' }).waitFor();
    await shot(page, '01-sign-in');
    await page.getByLabel('User id').fill(user);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByText(user, { exact: true }).waitFor();
  });

  await t.test('the free plan shows its allowance and is marked in the pricing table', async () => {
    await waitForText(meter.locator('[data-role=label]'), /^3 of 3 uploads left$/);
    const current = pricing.locator('[aria-current=true]');
    await waitForText(current.locator('h3'), /Explorer/);
    await waitForText(current, /Current plan/);
    await pricing.getByRole('button', { name: 'Subscribe to Community Pro' }).waitFor();
    await waitForText(pricing.locator('li[data-plan=community_pro] [part=price]'), /\$54\.00\s*\/ quarter/);
    await waitForText(pricing.locator('li[data-plan=community_pro]'), /7-day free trial/);
    await page.locator('#pricing').scrollIntoViewIfNeeded();
    await shot(page, '02-pricing');
  });

  await t.test('subscribing opens the checkout page, and paying comes back to the success page', async () => {
    await pricing.getByRole('button', { name: 'Subscribe to Community Pro' }).click();
    await page.waitForURL(/\/checkout\/cs_/);
    await page.getByRole('heading', { name: 'Billing simulator checkout' }).waitFor();
    await waitForText(page.locator('body'), /Community Pro/);
    await shot(page, '03-checkout');
    await page.locator('#card').fill('4242424242424242');
    await page.locator('#pay').click();
    await page.waitForURL(/\/demo\//); // the payment result takes ?checkout= out of the address bar once read
    await page.getByRole('heading', { name: /Payment received/ }).waitFor();
    // Stripe's events reach Billing within moments; the success page refreshes the elements meanwhile.
    await waitForText(meter.locator('[data-role=label]'), /^100 of 100 uploads left$/, 30_000);
    await waitForText(pricing.locator('[aria-current=true] h3'), /Community Pro/);
    await shot(page, '04-success');
  });

  await t.test('Generate spends one and the meter falls', async () => {
    await page.getByRole('button', { name: 'Generate', exact: true }).click();
    await waitForText(page.locator('#generate-status'), /^Generated\.$/);
    await waitForText(meter.locator('[data-role=label]'), /^99 of 100 uploads left$/);
    await waitForText(page.locator('#header-meter').locator('[data-role=label]'), /^99 of 100 uploads left$/);
    assert.equal(await page.locator('#outputs li').count(), 1);
    await page.getByRole('button', { name: 'Generate', exact: true }).click();
    await waitForText(meter.locator('[data-role=label]'), /^98 of 100 uploads left$/);
    assert.equal(await meter.locator('[role=progressbar]').getAttribute('aria-valuenow'), '2');
    await shot(page, '05-generated');
  });

  await t.test('at the limit, Generate is refused and the upgrade prompt offers a plan or a token pack', async () => {
    await page.getByRole('button', { name: /Use up the rest/ }).click();
    await waitForText(meter.locator('[data-role=label]'), /^0 of 100 uploads left$/);
    await page.getByRole('button', { name: 'Generate', exact: true }).click();
    await waitForText(page.locator('#generate-status'), /Not enough purchased tokens/);
    await prompt.locator('[role=alert]').waitFor();
    await waitForText(prompt.locator('h2'), /You are out of uploads/);
    await prompt.getByRole('link', { name: 'Upgrade your plan' }).waitFor();
    await prompt.getByRole('button', { name: /Buy Starter · 100,000 tokens for \$5\.00/ }).waitFor();
    await shot(page, '06-upgrade-prompt');
  });

  await t.test('buying a token pack from the prompt, paying, and coming back with the tokens', async () => {
    await prompt.getByRole('button', { name: /Buy Starter/ }).click();
    await page.waitForURL(/\/checkout\/cs_/);
    await waitForText(page.locator('body'), /Starter/);
    await page.locator('#pay').click();
    await page.waitForURL(/\/demo\//); // the payment result takes ?checkout= out of the address bar once read
    await page.getByRole('heading', { name: /Payment received/ }).waitFor();
    await waitForText(meter.locator('[data-role=tokens]'), /^100,000 tokens$/, 30_000);
    await waitForText(page.locator('billing-token-shop').locator('[data-role=balance]'), /^100,000$/);
    await shot(page, '07-tokens-bought');
  });

  await t.test('Generate continues, paid with tokens', async () => {
    await page.getByRole('button', { name: 'Generate', exact: true }).click();
    await waitForText(page.locator('#generate-status'), /paid with tokens \(98,500 left\)/);
    await waitForText(meter.locator('[data-role=tokens]'), /^98,500 tokens$/);
    assert.equal(await prompt.isHidden(), true, 'the upgrade prompt has gone');
    await shot(page, '08-continued-with-tokens');
  });

  await t.test('the billing settings show the plan, its payments and the wallet', async () => {
    const account = page.locator('billing-account');
    await page.locator('#account').scrollIntoViewIfNeeded();
    await waitForText(account.locator('[data-role=status-text]'), /^(Trial|Active)$/);
    await waitForText(account.locator('[part=subscription]'), /Community Pro/);
    await waitForText(account.locator('[part=payments]'), /Token pack|Starter/);
    await waitForText(account.locator('[part=wallet]'), /purchase/);
    await waitForText(account.locator('[part=wallet]'), /debit/);
    await account.getByRole('button', { name: 'Cancel subscription' }).waitFor();
    await shot(page, '09-account');
  });

  assert.deepEqual(errors, [], 'no script errors on the page');
});
