// Billing web elements: framework-agnostic custom elements for a product's billing screens.
// Plain modern JavaScript, no build step, no dependency. Import once:
//   <script type="module" src="https://billing.example.com/elements/billing.js"></script>
// Every element takes `gateway` (default: the origin this module was loaded from) and the user's token through a
// `getToken` property (a function returning a string or a promise of one) or a `token` attribute, or once for all
// with BillingElements.configure({ gateway, getToken }). Theme with CSS custom properties (--billing-accent, …) and
// ::part(). Events (bubbling, composed): billing:checkout, billing:plan-changed, billing:upgrade, billing:usage,
// billing:sign-in-required. The page tells the elements about its own AI calls with
//   window.dispatchEvent(new CustomEvent('billing:consumed', { detail: answer }))   // 200 of /api/usage/consume
//   window.dispatchEvent(new CustomEvent('billing:refused', { detail: problem }))   // its 402 problem
// and asks them to reload with `billing:refresh`.

const defaults = { gateway: new URL('/', import.meta.url).href, getToken: null };

/** Sets the gateway and token source for every element that has none of its own. */
export function configure({ gateway, getToken } = {}) {
  if (gateway !== undefined) defaults.gateway = gateway;
  if (getToken !== undefined) defaults.getToken = getToken;
  window.dispatchEvent(new CustomEvent('billing:refresh'));
}

/** An error answer of the gateway (problem details), or a network failure (status 0). */
export class BillingError extends Error {
  constructor(status, body, fallback) {
    super((body && (body.detail || body.title)) || fallback || `Request failed (${status})`);
    this.status = status;
    this.code = body?.code ?? null;
    this.body = body;
  }
}

const esc = (value) => String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);

// Stripe's minor units: amounts of its zero-decimal currencies are whole units, of its three-decimal ones thousandths,
// of every other currency hundredths — also where Intl shows no decimals (HUF, ISK, IDR, COP, PKR, TWD…).
const ZERO_DECIMAL = new Set(['BIF', 'CLP', 'DJF', 'GNF', 'JPY', 'KMF', 'KRW', 'MGA', 'PYG', 'RWF', 'UGX', 'VND', 'VUV', 'XAF', 'XOF', 'XPF']);
const THREE_DECIMAL = new Set(['BHD', 'JOD', 'KWD', 'OMR', 'TND']);
const minorDigits = (code) => (ZERO_DECIMAL.has(code) ? 0 : THREE_DECIMAL.has(code) ? 3 : 2);

/** Money in Stripe's minor unit of the currency, in the user's locale ("$5.00", "5,00 €", "1,500 Ft"). */
export function formatMoney(amount, currency) {
  const code = (currency || 'usd').toUpperCase();
  return new Intl.NumberFormat(undefined, { style: 'currency', currency: code }).format(amount / 10 ** minorDigits(code));
}

/** A unit price in the minor unit, fractions kept ("$0.005" for half a cent). */
export function formatUnitPrice(amount, currency) {
  const code = (currency || 'usd').toUpperCase();
  const shown = new Intl.NumberFormat(undefined, { style: 'currency', currency: code }).resolvedOptions().maximumFractionDigits;
  return new Intl.NumberFormat(undefined, { style: 'currency', currency: code, minimumFractionDigits: shown, maximumFractionDigits: minorDigits(code) + 12 })
    .format(amount / 10 ** minorDigits(code));
}

const formatNumber = (n) => new Intl.NumberFormat().format(n);
const formatDate = (iso, withTime = false) => iso
  ? new Intl.DateTimeFormat(undefined, withTime ? { dateStyle: 'medium', timeStyle: 'short' } : { dateStyle: 'medium' }).format(new Date(iso))
  : '';

/** A meter whose overage is billed, past its limit: not used up — spends go on, and the next invoice bills them. */
const pastBilledLimit = (m) => m.overage === 'bill' && !m.unlimited && m.limit !== null && m.remaining <= 0;

/** "ai.generation" → "generations" (override with the element's `unit` attribute). */
const unitOf = (meter, count = 2) => {
  const last = String(meter || '').split('.').pop().replace(/[_-]/g, ' ');
  return count === 1 ? last : (last.endsWith('s') ? last : `${last}s`);
};

const intervalLabel = (interval, count = 1) => {
  if (interval === 'month' && count === 3) return 'quarter';
  return count === 1 ? interval : `${count} ${interval}s`;
};

const baseCss = `
:host { display: block; font: var(--billing-font, 15px/1.45 system-ui, sans-serif); color: var(--billing-fg, #1f2933);
  --_accent: var(--billing-accent, #4f46e5); --_bg: var(--billing-bg, #fff); --_muted: var(--billing-muted, #616e7c);
  --_border: var(--billing-border, #d9dee5); --_radius: var(--billing-radius, 10px); --_danger: var(--billing-danger, #b42318);
  --_success: var(--billing-success, #067647); --_warning: var(--billing-warning, #b54708); }
:host([hidden]) { display: none; }
* { box-sizing: border-box; }
button, a.button { font: inherit; cursor: pointer; border-radius: calc(var(--_radius) * .7); padding: .5em 1em; border: 1px solid var(--_accent);
  background: var(--_accent); color: var(--billing-accent-fg, #fff); text-decoration: none; display: inline-block; }
button.secondary, a.button.secondary { background: transparent; color: var(--_accent); }
button[disabled] { opacity: .55; cursor: default; }
button:focus-visible, a:focus-visible, input:focus-visible { outline: 3px solid var(--billing-focus, #93c5fd); outline-offset: 2px; }
.muted { color: var(--_muted); }
.loading { color: var(--_muted); padding: .5em 0; }
.error { color: var(--_danger); border: 1px solid currentColor; border-radius: var(--_radius); padding: .75em 1em; display: flex; gap: 1em; align-items: center; justify-content: space-between; }
.card { background: var(--_bg); border: 1px solid var(--_border); border-radius: var(--_radius); padding: 1.25em; }
table { border-collapse: collapse; width: 100%; } th, td { text-align: left; padding: .4em .5em; border-bottom: 1px solid var(--_border); }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
`;

/** What every element shares: configuration, token, fetch, loading and error states, re-rendering with focus kept. */
class BillingElement extends HTMLElement {
  static get observedAttributes() { return ['gateway', 'token']; }

  constructor() {
    super();
    this.attachShadow({ mode: 'open' });
    this._onRefresh = () => this.isConnected && this.load();
    this._generation = 0;
  }

  connectedCallback() {
    window.addEventListener('billing:refresh', this._onRefresh);
    this.load();
  }

  disconnectedCallback() { window.removeEventListener('billing:refresh', this._onRefresh); }

  attributeChangedCallback(name, before, after) {
    if (before !== after && this.isConnected && this._loadedOnce) this.load();
  }

  /** A function returning the user's token (or a promise of it). */
  get getToken() { return this._getToken ?? null; }
  set getToken(fn) { this._getToken = fn; if (this.isConnected) this.load(); }

  get gateway() { return this.getAttribute('gateway') || defaults.gateway; }

  async token() {
    const fn = this._getToken || defaults.getToken;
    if (fn) return (await fn()) || null;
    return this.getAttribute('token') || null;
  }

  async api(path, { method = 'GET', body, auth = true } = {}) {
    const headers = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    if (auth) {
      const token = await this.token();
      if (!token) throw new BillingError(401, { code: 'sign_in_required', title: 'Sign in to see this.' });
      headers.Authorization = `Bearer ${token}`;
    }
    let response;
    try {
      response = await fetch(new URL(path, this.gateway), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (e) {
      throw new BillingError(0, null, 'Billing cannot be reached. Check your connection and try again.');
    }
    const text = await response.text();
    let json = null;
    try { json = text ? JSON.parse(text) : null; } catch { json = null; }
    if (!response.ok) throw new BillingError(response.status, json, response.status === 401 ? 'Your session has expired; sign in again.' : undefined);
    return json;
  }

  /** Loads data through `fetchData()` and renders it, with a loading state; a newer load wins over an older one. */
  async load() {
    const generation = ++this._generation;
    this._loadedOnce = true;
    if (!this._data) this.renderLoading();
    this.setAttribute('aria-busy', 'true');
    try {
      const data = await this.fetchData();
      if (generation !== this._generation) return;
      this._data = data;
      this._error = null;
      this.render(this.view(data));
    } catch (error) {
      if (generation !== this._generation) return;
      this._error = error;
      this.renderError(error);
    } finally {
      if (generation === this._generation) this.removeAttribute('aria-busy');
    }
  }

  async fetchData() { return null; }
  view() { return ''; }
  get css() { return ''; }

  render(html) {
    const active = this.shadowRoot.activeElement?.dataset?.key;
    this.shadowRoot.innerHTML = `<style>${baseCss}${this.css}</style>${html}`;
    if (active) this.shadowRoot.querySelector(`[data-key="${CSS.escape(active)}"]`)?.focus();
  }

  renderLoading() {
    this.render(`<div class="loading" part="loading" role="status" aria-live="polite">${esc(this.loadingText)}</div>`);
  }

  get loadingText() { return 'Loading…'; }

  renderError(error) {
    const signIn = error.status === 401;
    this.render(`<div class="error" part="error" role="alert"><span>${esc(error.message)}</span>
      <button type="button" class="secondary" data-key="retry" data-action="retry">${signIn ? 'Sign in' : 'Try again'}</button></div>`);
    this.shadowRoot.querySelector('[data-action=retry]').addEventListener('click', () => {
      if (signIn) this.emit('billing:sign-in-required', {});
      else this.load();
    });
  }

  emit(type, detail, cancelable = false) {
    return this.dispatchEvent(new CustomEvent(type, { detail, bubbles: true, composed: true, cancelable }));
  }

  /** This page without what a Checkout return added (?checkout=, session_id): where Stripe's pages come back to. */
  static pageUrl() {
    const here = new URL(window.location.href);
    here.searchParams.delete('checkout');
    here.searchParams.delete('session_id');
    here.hash = '';
    return here;
  }

  /** Where Checkout returns: the element's success-url / cancel-url, else this page with ?checkout=success|cancel. */
  returnUrls() {
    const here = BillingElement.pageUrl();
    const success = new URL(here); success.searchParams.set('checkout', 'success');
    const cancel = new URL(here); cancel.searchParams.set('checkout', 'cancel');
    return {
      successUrl: this.getAttribute('success-url') || `${success.href}&session_id={CHECKOUT_SESSION_ID}`,
      cancelUrl: this.getAttribute('cancel-url') || cancel.href,
    };
  }

  /** Sends the browser to a Stripe page unless a listener of `billing:checkout` calls preventDefault(). */
  go(url, detail) {
    if (this.emit('billing:checkout', { url, ...detail }, true)) window.location.assign(url);
  }

  /** Runs an action from a button: disables it, shows errors in a live region, reloads afterwards. */
  async act(button, action) {
    const status = this.shadowRoot.querySelector('[data-role=status]');
    button.disabled = true;
    button.setAttribute('aria-busy', 'true');
    if (status) status.textContent = '';
    try {
      await action();
      // Usually the browser is leaving for Stripe now; if it stays (a billing:checkout listener took over, or the page
      // comes back from the back/forward cache), the button works again.
      const again = () => { button.disabled = false; button.removeAttribute('aria-busy'); };
      setTimeout(again, 4000);
      window.addEventListener('pageshow', again, { once: true });
    } catch (error) {
      if (status) { status.textContent = error.message; status.className = 'error-text'; }
      button.disabled = false;
      button.removeAttribute('aria-busy');
      button.focus();
    }
  }
}

/** GET /api/usage/me with the token balance from Wallet, whose ledger is the truth (Usage's copy may lag a debit). */
async function usageWithWallet(element) {
  const [usage, wallet] = await Promise.all([element.api('/api/usage/me'), element.api('/api/wallet/me').catch(() => null)]);
  if (wallet && typeof wallet.balance === 'number') usage.tokens = { ...(usage.tokens || {}), balance: wallet.balance };
  return usage;
}

// ───────────────────────────── <billing-pricing-table> ─────────────────────────────
/** Plans from GET /api/plans with an interval switch, the current plan marked, Subscribe / Change plan. */
export class BillingPricingTable extends BillingElement {
  static get observedAttributes() { return [...super.observedAttributes, 'interval']; }

  async fetchData() {
    const [catalog, subscription] = await Promise.all([
      this.api('/api/plans', { auth: false }),
      this.token().then((t) => (t ? this.api('/api/subscriptions/me') : null)),
    ]);
    return { plans: catalog.plans, subscription };
  }

  get css() {
    return `
    .switch { display: flex; gap: .25em; justify-content: center; margin: 0 0 1.25em; border: 0; padding: 0; }
    .switch label { border: 1px solid var(--_border); padding: .45em 1em; border-radius: 999px; cursor: pointer; }
    .switch input { position: absolute; opacity: 0; }
    .switch input:checked + span { font-weight: 600; color: var(--_accent); }
    .switch label:has(input:checked) { border-color: var(--_accent); }
    .switch label:has(input:focus-visible) { outline: 3px solid var(--billing-focus, #93c5fd); }
    .save { font-size: .8em; color: var(--_success); margin-left: .35em; }
    .plans { display: grid; gap: 1em; grid-template-columns: repeat(auto-fit, minmax(14em, 1fr)); list-style: none; padding: 0; margin: 0; }
    .plan { display: flex; flex-direction: column; gap: .6em; position: relative; }
    .plan.current { border: 2px solid var(--_accent); }
    .badge { position: absolute; top: -.8em; right: 1em; background: var(--_accent); color: var(--billing-accent-fg, #fff); font-size: .75em; padding: .15em .6em; border-radius: 999px; }
    h3 { margin: 0; font-size: 1.2em; }
    .price { font-size: 1.8em; font-weight: 700; } .price small { font-size: .5em; font-weight: 400; color: var(--_muted); }
    ul.features { padding-left: 1.1em; margin: 0; flex: 1; }
    .confirm { margin-top: 1em; } .confirm p { margin: 0 0 .75em; } .actions { display: flex; gap: .5em; flex-wrap: wrap; }
    .error-text { color: var(--_danger); }`;
  }

  intervals(plans) {
    const seen = new Map();
    for (const plan of plans) for (const p of plan.prices || []) seen.set(`${p.interval}:${p.intervalCount}`, p);
    const order = { day: 0, week: 1, month: 2, year: 3 };
    return [...seen.values()].sort((a, b) => order[a.interval] - order[b.interval] || a.intervalCount - b.intervalCount);
  }

  /** The largest saving of the yearly price over twelve monthly ones, in percent. */
  yearlySaving(plans) {
    let best = 0;
    for (const plan of plans) {
      const month = plan.prices?.find((p) => p.interval === 'month' && p.intervalCount === 1);
      const year = plan.prices?.find((p) => p.interval === 'year' && p.intervalCount === 1);
      if (month && year) best = Math.max(best, Math.round((1 - year.amount / (12 * month.amount)) * 100));
    }
    return best;
  }

  view({ plans: all, subscription }) {
    // Archived plans are no longer sold; the one the user has stays on the table (marked as theirs).
    const plans = all.filter((p) => !p.archived || p.id === subscription?.planId);
    const intervals = this.intervals(plans);
    const wanted = this._interval || this.getAttribute('interval')
      || (subscription?.interval ? `${subscription.interval}:${subscription.intervalCount || 1}` : null);
    const chosen = intervals.find((i) => `${i.interval}:${i.intervalCount}` === wanted) || intervals[0];
    this._chosen = chosen;
    const saving = this.yearlySaving(plans);
    const subscribed = subscription && ['active', 'trialing', 'past_due'].includes(subscription.status);
    const switcher = intervals.length > 1 ? `
      <fieldset class="switch" part="interval-switch"><legend class="visually-hidden">Billing interval</legend>
        ${intervals.map((i) => {
          const key = `${i.interval}:${i.intervalCount}`;
          const label = i.intervalCount === 1 ? `${i.interval === 'year' ? 'Yearly' : i.interval === 'month' ? 'Monthly' : i.interval}` : `Every ${intervalLabel(i.interval, i.intervalCount)}`;
          return `<label><input type="radio" name="interval" value="${esc(key)}" data-key="i-${esc(key)}" ${i === chosen ? 'checked' : ''}>
            <span>${esc(label)}</span>${i.interval === 'year' && saving > 0 ? `<span class="save" part="saving">Save ${saving}%</span>` : ''}</label>`;
        }).join('')}
      </fieldset>` : '';
    const cards = plans.map((plan) => {
      const price = plan.prices?.find((p) => p.interval === chosen?.interval && p.intervalCount === chosen?.intervalCount);
      const free = !plan.prices || plan.prices.length === 0;
      const current = subscription && subscription.planId === plan.id
        && (free ? !subscribed : subscribed && subscription.interval === price?.interval && (subscription.intervalCount || 1) === price?.intervalCount);
      const currentPlanOtherInterval = subscribed && subscription.planId === plan.id && !current;
      // Billed overage says what one more costs past the allowance ("500 messages a day, then $0.005 each").
      const overage = (m) => m.overage === 'bill' && m.overageUnitAmount > 0 && m.limit !== null
        ? `, then ${formatUnitPrice(m.overageUnitAmount, price?.currency || plan.prices?.[0]?.currency)} each` : '';
      const meters = (plan.meters || []).map((m) => `<li>${m.limit === null ? 'Unlimited' : formatNumber(m.limit)} ${esc(this.getAttribute('unit') || unitOf(m.meter, m.limit))} a ${esc(m.window === 'period' ? 'billing period' : m.window)}${esc(overage(m))}</li>`);
      const features = (plan.features || []).map((f) => `<li>${esc(f.replace(/_/g, ' '))}</li>`);
      const trial = plan.trialDays > 0 && !subscribed ? `<div class="muted">${plan.trialDays}-day free trial</div>` : '';
      let action = '';
      if (current) action = `<button type="button" disabled part="button current-button">Current plan</button>`;
      else if (free) action = subscribed ? '<div class="muted">Cancel your subscription to return to this plan.</div>' : '';
      else if (!price) action = `<div class="muted">Not offered ${esc(chosen ? 'per ' + intervalLabel(chosen.interval, chosen.intervalCount) : '')}</div>`;
      else if (subscribed) action = `<button type="button" part="button change-button" data-action="change" data-plan="${esc(plan.id)}" data-key="c-${esc(plan.id)}" aria-label="Change plan to ${esc(plan.name)}">${currentPlanOtherInterval ? `Switch to ${esc(intervalLabel(price.interval, price.intervalCount))}ly` : 'Change plan'}</button>`;
      else action = `<button type="button" part="button subscribe-button" data-action="subscribe" data-plan="${esc(plan.id)}" data-key="s-${esc(plan.id)}" aria-label="Subscribe to ${esc(plan.name)}">Subscribe</button>`;
      return `<li class="card plan${current ? ' current' : ''}" part="plan${current ? ' current-plan' : ''}" aria-current="${current ? 'true' : 'false'}" data-plan="${esc(plan.id)}">
        ${current ? '<span class="badge" part="badge">Current plan</span>' : ''}
        <h3>${esc(plan.name)}</h3>
        <div class="price" part="price">${free ? 'Free' : price ? `${esc(formatMoney(price.amount, price.currency))} <small>/ ${esc(intervalLabel(price.interval, price.intervalCount))}</small>` : '—'}</div>
        ${trial}
        ${plan.description ? `<p class="muted">${esc(plan.description)}</p>` : ''}
        <ul class="features" part="features">${meters.join('')}${features.join('')}</ul>
        ${action}
      </li>`;
    }).join('');
    const confirm = this._preview ? this.confirmView(this._preview) : '';
    return `${switcher}<ul class="plans" part="plans" aria-label="Plans">${cards}</ul>${confirm}
      <div data-role="status" role="status" aria-live="polite"></div>`;
  }

  confirmView(preview) {
    const plan = this._data.plans.find((p) => p.id === preview.planId);
    const when = preview.kind === 'upgrade'
      ? `You pay <strong>${esc(formatMoney(preview.amountDueNow, preview.currency))}</strong> now (prorated for the rest of this period), then ${esc(formatMoney(preview.nextAmount, preview.currency))} per ${esc(intervalLabel(preview.interval, preview.intervalCount))}.`
      : `The change takes effect on ${esc(formatDate(preview.effectiveAt))}; nothing is charged now, then ${esc(formatMoney(preview.nextAmount, preview.currency))} per ${esc(intervalLabel(preview.interval, preview.intervalCount))}.`;
    return `<section class="card confirm" part="confirm" role="dialog" aria-modal="false" aria-labelledby="confirm-title">
      <h3 id="confirm-title">${preview.kind === 'upgrade' ? 'Upgrade' : 'Change'} to ${esc(plan?.name || preview.planId)}?</h3>
      <p>${when}</p>
      <div class="actions"><button type="button" data-action="confirm" data-key="confirm" part="button confirm-button">Confirm change</button>
      <button type="button" class="secondary" data-action="dismiss" data-key="dismiss">Keep my plan</button></div></section>`;
  }

  render(html) {
    super.render(html);
    const root = this.shadowRoot;
    root.querySelectorAll('input[name=interval]').forEach((input) => input.addEventListener('change', () => {
      this._interval = input.value;
      this._preview = null;
      this.render(this.view(this._data));
    }));
    root.querySelectorAll('[data-action=subscribe]').forEach((b) => b.addEventListener('click', () => this.subscribe(b)));
    root.querySelectorAll('[data-action=change]').forEach((b) => b.addEventListener('click', () => this.preview(b)));
    root.querySelector('[data-action=confirm]')?.addEventListener('click', (e) => this.change(e.currentTarget));
    root.querySelector('[data-action=dismiss]')?.addEventListener('click', () => { this._preview = null; this.render(this.view(this._data)); });
    if (this._focusConfirm) { this._focusConfirm = false; root.querySelector('[data-action=confirm]')?.focus(); }
  }

  async subscribe(button) {
    if (!(await this.token())) { this.emit('billing:sign-in-required', { planId: button.dataset.plan }); return; }
    const { interval, intervalCount } = this._chosen;
    await this.act(button, async () => {
      const answer = await this.api('/api/subscriptions/checkout', { method: 'POST', body: { planId: button.dataset.plan, interval, intervalCount, ...this.returnUrls() } });
      this.go(answer.url, { kind: 'subscription', planId: button.dataset.plan, checkoutSessionId: answer.checkoutSessionId });
    });
  }

  async preview(button) {
    const { interval, intervalCount } = this._chosen;
    await this.act(button, async () => {
      const query = new URLSearchParams({ planId: button.dataset.plan, interval, intervalCount: String(intervalCount) });
      this._preview = await this.api(`/api/subscriptions/me/change-preview?${query}`);
      this._focusConfirm = true;
      this.render(this.view(this._data));
    });
  }

  async change(button) {
    const { planId, interval, intervalCount } = this._preview;
    await this.act(button, async () => {
      const answer = await this.api('/api/subscriptions/me/change', { method: 'POST', body: { planId, interval, intervalCount } });
      this._preview = null;
      this.emit('billing:plan-changed', answer);
      window.dispatchEvent(new CustomEvent('billing:refresh'));
    });
  }
}

// ───────────────────────────── <billing-usage-meter> ─────────────────────────────
/** used / limit of one meter with a bar, when it resets, and the token balance; refreshes after billing:consumed. */
export class BillingUsageMeter extends BillingElement {
  static get observedAttributes() { return [...super.observedAttributes, 'meter', 'unit', 'compact']; }

  constructor() {
    super();
    this._onConsumed = (e) => this.consumed(e.detail);
  }

  connectedCallback() {
    super.connectedCallback();
    window.addEventListener('billing:consumed', this._onConsumed);
    window.addEventListener('billing:refused', this._onRefresh);
  }

  disconnectedCallback() {
    super.disconnectedCallback();
    window.removeEventListener('billing:consumed', this._onConsumed);
    window.removeEventListener('billing:refused', this._onRefresh);
  }

  get meter() { return this.getAttribute('meter') || 'ai.generation'; }

  consumed() { this.load(); }

  async fetchData() {
    const usage = await usageWithWallet(this);
    this.emit('billing:usage', usage);
    return usage;
  }

  get css() {
    return `
    :host { min-width: 12em; }
    .row { display: flex; justify-content: space-between; gap: 1em; align-items: baseline; }
    .bar { height: .5em; border-radius: 999px; background: var(--billing-track, #e4e7ec); overflow: hidden; margin: .35em 0; }
    .fill { height: 100%; background: var(--_accent); transition: width .4s ease; }
    .low .fill, .over .fill { background: var(--_warning); } .empty .fill { background: var(--_danger); }
    .label { font-weight: 600; } .meta { font-size: .85em; }
    :host([compact]) .meta { display: none; }
    @media (prefers-reduced-motion: reduce) { .fill { transition: none; } }`;
  }

  view(usage) {
    const m = (usage.meters || []).find((x) => x.meter === this.meter);
    const unit = this.getAttribute('unit') || unitOf(this.meter);
    const tokens = usage.tokens?.balance ?? 0;
    const tokenLine = `<span part="tokens" data-role="tokens">${formatNumber(tokens)} tokens</span>`;
    if (!m) return `<div part="meter" class="muted">No ${esc(unit)} on your plan · ${tokenLine}</div>`;
    if (m.unlimited || m.limit === null) {
      return `<div part="meter"><div class="row"><span class="label" part="label" data-role="label">Unlimited ${esc(unit)}</span></div>
        <div class="meta muted">${m.used ? `${formatNumber(m.used)} used · ` : ''}${tokenLine}</div></div>`;
    }
    const pct = m.limit > 0 ? Math.min(100, Math.round((m.used / m.limit) * 100)) : 100;
    const billed = pastBilledLimit(m);
    const state = billed ? 'over' : m.remaining <= 0 ? 'empty' : m.limit > 0 && m.remaining / m.limit <= 0.2 ? 'low' : 'ok';
    const label = billed
      ? `${formatNumber(m.limit)} ${unit} included · ${formatNumber(Math.max(0, m.used - m.limit))} more billed`
      : `${formatNumber(m.remaining)} of ${formatNumber(m.limit)} ${unit} left`;
    return `<div part="meter" class="${state}" data-state="${state}">
      <div class="row"><span class="label" part="label" data-role="label">${esc(label)}</span>
        <span class="muted" part="used" data-role="used">${formatNumber(m.used)} / ${formatNumber(m.limit)}</span></div>
      <div class="bar" part="bar" role="progressbar" aria-label="${esc(unit)} used" aria-valuemin="0" aria-valuemax="${m.limit}" aria-valuenow="${m.used}"
        aria-valuetext="${esc(`${formatNumber(m.used)} of ${formatNumber(m.limit)} ${unit} used`)}"><div class="fill" style="width:${pct}%"></div></div>
      <div class="meta muted" part="meta">${m.resetsAt ? `Resets ${esc(formatDate(m.resetsAt, true))} · ` : ''}${tokenLine}</div>
      <span class="visually-hidden" role="status" aria-live="polite">${esc(label)}</span></div>`;
  }
}

// ───────────────────────────── <billing-upgrade-prompt> ─────────────────────────────
/** Appears when a meter is low or exhausted (from the usage answer or a 402 the page passes on); offers an upgrade or a token pack. */
export class BillingUpgradePrompt extends BillingElement {
  static get observedAttributes() { return [...super.observedAttributes, 'meter', 'unit', 'pricing-href', 'low-threshold']; }

  constructor() {
    super();
    this._onRefused = (e) => { this._refusal = e.detail || { code: 'quota_exhausted' }; this._dismissed = false; this.load(); };
    this._onConsumed = () => { this._refusal = null; this.load(); };
  }

  connectedCallback() {
    this.hidden = true;
    super.connectedCallback();
    window.addEventListener('billing:refused', this._onRefused);
    window.addEventListener('billing:consumed', this._onConsumed);
  }

  disconnectedCallback() {
    super.disconnectedCallback();
    window.removeEventListener('billing:refused', this._onRefused);
    window.removeEventListener('billing:consumed', this._onConsumed);
  }

  get meter() { return this.getAttribute('meter') || 'ai.generation'; }

  renderLoading() { /* stays hidden until there is something to say */ }

  renderError() { this.hidden = true; }

  async fetchData() {
    const [usage, packs, subscription] = await Promise.all([
      usageWithWallet(this),
      this.api('/api/token-packs', { auth: false }).catch(() => ({ packs: [] })),
      this.api('/api/subscriptions/me').catch(() => null),
    ]);
    return { usage, packs: packs.packs || [], subscription };
  }

  get css() {
    return `
    .prompt { border-left: 4px solid var(--_warning); display: grid; gap: .75em; }
    .prompt.exhausted { border-left-color: var(--_danger); }
    h2 { margin: 0; font-size: 1.1em; } p { margin: 0; }
    .actions { display: flex; flex-wrap: wrap; gap: .5em; } .close { margin-left: auto; }
    .error-text { color: var(--_danger); }`;
  }

  view({ usage, packs, subscription }) {
    const m = (usage.meters || []).find((x) => x.meter === this.meter);
    const unit = this.getAttribute('unit') || unitOf(this.meter);
    const threshold = Number(this.getAttribute('low-threshold') || 0.2);
    // Access suspended (payment past due beyond grace): every consume is refused, whatever the meter says is left.
    const refusal = this._refusal || (usage.access === 'suspended' ? { code: 'payment_past_due' } : null);
    let state = null;
    if (refusal) state = 'exhausted';
    else if (m && m.limit > 0 && pastBilledLimit(m)) state = 'billed';
    else if (m && !m.unlimited && m.limit !== null && m.limit > 0 && m.remaining <= 0 && !(usage.tokens?.balance > 0)) state = 'exhausted';
    else if (m && !m.unlimited && m.limit !== null && m.limit > 0 && m.remaining / m.limit <= threshold && m.remaining > 0) state = 'low';
    if (!state || (this._dismissed && state === this._dismissedState)) { this.hidden = true; return ''; }
    this.hidden = false;
    const code = refusal?.code || (state === 'exhausted' ? 'quota_exhausted' : state === 'billed' ? 'overage_billed' : 'low');
    const resets = (refusal?.resetsAt || m?.resetsAt) ? ` It resets ${formatDate(refusal?.resetsAt || m?.resetsAt, true)}.` : '';
    const messages = {
      low: [`Only ${formatNumber(m?.remaining ?? 0)} ${unit} left`, `You have used ${formatNumber(m?.used ?? 0)} of ${formatNumber(m?.limit ?? 0)} this period.${resets}`],
      overage_billed: [`You are past your plan's ${formatNumber(m?.limit ?? 0)} ${unit}`, `You can go on: each one more is billed on your next invoice. A larger plan includes more.${resets}`],
      quota_exhausted: [`You have used all your ${unit}`, `Your plan's ${formatNumber(refusal?.limit ?? m?.limit ?? 0)} ${unit} are used up.${resets}`],
      insufficient_tokens: [`You are out of ${unit}`, `Your plan's allowance is used up and your token balance (${formatNumber(refusal?.balance ?? usage.tokens?.balance ?? 0)}) does not cover another one.${resets}`],
      no_subscription: [`Subscribe to use ${unit}`, `Your current plan does not include ${unit}.`],
      payment_past_due: ['Your payment is past due', 'Update your payment method to keep using your plan.'],
    };
    const [title, text] = messages[code] || [`You cannot use more ${unit} right now`, refusal?.detail || ''];
    const subscribed = subscription && ['active', 'trialing', 'past_due'].includes(subscription.status);
    const actions = [];
    if (code === 'payment_past_due') actions.push('<button type="button" data-action="portal" data-key="portal" part="button portal-button">Update payment method</button>');
    else if (refusal?.upgrade !== false || !subscribed) {
      actions.push(this.getAttribute('pricing-href')
        ? `<a class="button" part="button upgrade-button" href="${esc(this.getAttribute('pricing-href'))}" data-action="upgrade">${subscribed ? 'Upgrade your plan' : 'See plans'}</a>`
        : `<button type="button" data-action="upgrade" data-key="upgrade" part="button upgrade-button">${subscribed ? 'Upgrade your plan' : 'See plans'}</button>`);
    }
    if (code !== 'payment_past_due' && code !== 'overage_billed') { // tokens do not pay for a billed meter
      for (const pack of packs) {
        actions.push(`<button type="button" class="secondary" data-action="buy" data-pack="${esc(pack.id)}" data-key="b-${esc(pack.id)}" part="button pack-button">Buy ${esc(pack.name)} · ${esc(formatNumber(pack.tokens))} tokens for ${esc(formatMoney(pack.amount, pack.currency))}</button>`);
      }
    }
    return `<section class="card prompt ${state}" part="prompt ${state}" role="alert" aria-labelledby="t" data-code="${esc(code)}">
      <div class="actions"><h2 id="t">${esc(title)}</h2><button type="button" class="secondary close" data-action="dismiss" data-key="dismiss" aria-label="Dismiss">×</button></div>
      <p>${esc(text)}</p><div class="actions">${actions.join('')}</div>
      <div data-role="status" role="status" aria-live="polite"></div></section>`;
  }

  render(html) {
    super.render(html);
    const root = this.shadowRoot;
    root.querySelector('[data-action=dismiss]')?.addEventListener('click', () => {
      this._dismissed = true;
      const shown = root.querySelector('section')?.classList;
      this._dismissedState = this._refusal ? 'exhausted' : shown?.contains('low') ? 'low' : shown?.contains('billed') ? 'billed' : 'exhausted';
      this._refusal = null;
      this.hidden = true;
    });
    root.querySelector('button[data-action=upgrade]')?.addEventListener('click', () => this.emit('billing:upgrade', { meter: this.meter }));
    root.querySelector('a[data-action=upgrade]')?.addEventListener('click', () => this.emit('billing:upgrade', { meter: this.meter }));
    root.querySelectorAll('[data-action=buy]').forEach((b) => b.addEventListener('click', () => this.act(b, async () => {
      const answer = await this.api('/api/wallet/checkout', { method: 'POST', body: { packId: b.dataset.pack, ...this.returnUrls() } });
      this.go(answer.url, { kind: 'token_pack', packId: b.dataset.pack, checkoutSessionId: answer.checkoutSessionId });
    })));
    root.querySelector('[data-action=portal]')?.addEventListener('click', (e) => this.act(e.currentTarget, async () => {
      const answer = await this.api('/api/billing-portal', { method: 'POST', body: { returnUrl: BillingElement.pageUrl().href } });
      this.go(answer.url, { kind: 'portal' });
    }));
  }
}

// ───────────────────────────── <billing-token-shop> ─────────────────────────────
/** Token packs from GET /api/token-packs with the balance; Buy starts a payment-mode Checkout. */
export class BillingTokenShop extends BillingElement {
  async fetchData() {
    const [catalog, wallet] = await Promise.all([
      this.api('/api/token-packs', { auth: false }),
      this.token().then((t) => (t ? this.api('/api/wallet/me') : null)),
    ]);
    return { packs: catalog.packs || [], wallet };
  }

  get css() {
    return `
    .packs { display: grid; gap: 1em; grid-template-columns: repeat(auto-fit, minmax(11em, 1fr)); list-style: none; padding: 0; margin: 0; }
    .pack { display: grid; gap: .4em; } h3 { margin: 0; } .price { font-size: 1.4em; font-weight: 700; }
    .balance { margin: 0 0 1em; } .error-text { color: var(--_danger); }`;
  }

  view({ packs, wallet }) {
    const balance = wallet ? `<p class="balance" part="balance">Your balance: <strong data-role="balance">${formatNumber(wallet.balance)}</strong> tokens</p>` : '';
    if (packs.length === 0) return `${balance}<p class="muted" part="empty">No token packs are on sale.</p>`;
    return `${balance}<ul class="packs" part="packs" aria-label="Token packs">${packs.map((p) => `
      <li class="card pack" part="pack"><h3>${esc(p.name)}</h3><div>${esc(formatNumber(p.tokens))} tokens</div>
        <div class="price" part="price">${esc(formatMoney(p.amount, p.currency))}</div>
        <button type="button" data-action="buy" data-pack="${esc(p.id)}" data-key="b-${esc(p.id)}" part="button buy-button" aria-label="Buy ${esc(p.name)}: ${esc(formatNumber(p.tokens))} tokens for ${esc(formatMoney(p.amount, p.currency))}">Buy</button></li>`).join('')}
    </ul><div data-role="status" role="status" aria-live="polite"></div>`;
  }

  render(html) {
    super.render(html);
    this.shadowRoot.querySelectorAll('[data-action=buy]').forEach((b) => b.addEventListener('click', async () => {
      if (!(await this.token())) { this.emit('billing:sign-in-required', { packId: b.dataset.pack }); return; }
      await this.act(b, async () => {
        const answer = await this.api('/api/wallet/checkout', { method: 'POST', body: { packId: b.dataset.pack, ...this.returnUrls() } });
        this.go(answer.url, { kind: 'token_pack', packId: b.dataset.pack, checkoutSessionId: answer.checkoutSessionId });
      });
    }));
  }
}

// ───────────────────────────── <billing-payment-result> ─────────────────────────────
/**
 * The page Checkout returns to: status="success" (a short celebration) or "cancel", or read from the URL's
 * ?checkout= parameter. After a success it asks the other elements to refresh while Stripe's events arrive.
 */
export class BillingPaymentResult extends BillingElement {
  static get observedAttributes() { return [...super.observedAttributes, 'status', 'continue-href']; }

  get status() {
    return this.getAttribute('status') || this._fromUrl || '';
  }

  connectedCallback() {
    // Read once, then taken out of the address bar: a reload, or a return from the customer portal, is no new payment.
    const url = new URL(window.location.href);
    const param = this.getAttribute('param') || 'checkout';
    this._fromUrl ??= url.searchParams.get(param) || '';
    if (url.searchParams.has(param)) {
      url.searchParams.delete(param);
      url.searchParams.delete('session_id');
      history.replaceState(history.state, '', url.href);
    }
    super.connectedCallback();
    if (this.status === 'success') {
      // Stripe's webhook reaches Billing within moments: refresh plan, meter and balance a few times.
      this._timers = [1000, 2500, 5000, 9000, 15000].map((ms) => setTimeout(() => window.dispatchEvent(new CustomEvent('billing:refresh')), ms));
    }
  }

  disconnectedCallback() {
    super.disconnectedCallback();
    (this._timers || []).forEach(clearTimeout);
  }

  load() {
    const status = this.status;
    this.hidden = status !== 'success' && status !== 'cancel';
    if (this.hidden) { this.render(''); return; }
    this.render(this.view(status));
    if (!this._focused) { this._focused = true; this.shadowRoot.querySelector('h2')?.focus(); }
  }

  get css() {
    return `
    .result { position: relative; overflow: hidden; text-align: center; }
    .result.success { border-color: var(--_success); } .result.cancel { border-color: var(--_border); }
    h2 { margin: .2em 0; outline: none; } .icon { font-size: 2.4em; line-height: 1; }
    .confetti { position: absolute; inset: 0; pointer-events: none; }
    .confetti i { position: absolute; top: -10%; width: .5em; height: .9em; opacity: .9; animation: fall 1.8s ease-in forwards; }
    @keyframes fall { to { transform: translateY(260px) rotate(540deg); opacity: 0; } }
    @media (prefers-reduced-motion: reduce) { .confetti { display: none; } }`;
  }

  view(status) {
    const href = this.getAttribute('continue-href');
    if (status === 'success') {
      const colors = ['#4f46e5', '#16a34a', '#f59e0b', '#ec4899', '#0ea5e9'];
      const bits = Array.from({ length: 28 }, (_, i) => `<i style="left:${(i * 37) % 100}%;background:${colors[i % colors.length]};animation-delay:${(i % 7) * 0.08}s"></i>`).join('');
      return `<section class="card result success" part="result success" role="status" aria-live="polite">
        <div class="confetti" aria-hidden="true">${bits}</div>
        <div class="icon" aria-hidden="true">✓</div><h2 tabindex="-1">${esc(this.getAttribute('success-title') || 'Payment received — thank you!')}</h2>
        <p>${esc(this.getAttribute('success-text') || 'Your plan or tokens are ready in a moment.')}</p>
        ${href ? `<a class="button" part="button continue-button" href="${esc(href)}">Continue</a>` : ''}</section>`;
    }
    return `<section class="card result cancel" part="result cancel" role="status" aria-live="polite">
      <h2 tabindex="-1">${esc(this.getAttribute('cancel-title') || 'Checkout cancelled')}</h2>
      <p>${esc(this.getAttribute('cancel-text') || 'Nothing was charged. You can pick a plan whenever you like.')}</p>
      ${href ? `<a class="button secondary" part="button continue-button" href="${esc(href)}">Back</a>` : ''}</section>`;
  }
}

// ───────────────────────────── <billing-account> ─────────────────────────────
/** Plan, status, renewal or cancel date, grace warning, cancel / resume, the portal, payments and wallet history. */
export class BillingAccount extends BillingElement {
  async fetchData() {
    const [subscription, catalog, payments, transactions] = await Promise.all([
      this.api('/api/subscriptions/me'),
      this.api('/api/plans', { auth: false }),
      this.api('/api/payments/me').catch(() => ({ items: [] })),
      this.api('/api/wallet/me/transactions?limit=10').catch(() => ({ items: [] })),
    ]);
    // A plan that bills overage: what the next invoice holds so far (Stripe's preview; one call, so only for those plans).
    const plan = catalog.plans.find((p) => p.id === subscription.planId);
    const upcoming = ['active', 'trialing', 'past_due'].includes(subscription.status) && (plan?.meters || []).some((m) => m.overage === 'bill')
      ? await this.api('/api/subscriptions/me/upcoming-invoice').catch(() => null) : null;
    return { subscription, plans: catalog.plans, payments: payments.items || [], transactions: transactions.items || [], upcoming };
  }

  get css() {
    return `
    section { margin-bottom: 1.25em; } h2 { font-size: 1.1em; margin: 0 0 .5em; }
    dl { display: grid; grid-template-columns: max-content 1fr; gap: .3em 1em; margin: 0 0 1em; } dt { color: var(--_muted); } dd { margin: 0; }
    .warning { color: var(--_warning); border: 1px solid currentColor; border-radius: var(--_radius); padding: .6em .9em; margin-bottom: 1em; }
    .actions { display: flex; gap: .5em; flex-wrap: wrap; } .amount { text-align: right; font-variant-numeric: tabular-nums; }
    .error-text { color: var(--_danger); }`;
  }

  view({ subscription: s, plans, payments, transactions, upcoming }) {
    const plan = plans.find((p) => p.id === s.planId);
    const live = ['active', 'trialing', 'past_due'].includes(s.status);
    const statusText = { none: 'Free', trialing: 'Trial', active: 'Active', past_due: 'Payment past due', canceled: 'Canceled', expired: 'Expired' }[s.status] || s.status;
    const price = plan?.prices?.find((p) => p.interval === s.interval && p.intervalCount === (s.intervalCount || 1));
    const rows = [
      ['Plan', `${esc(plan?.name || s.planId)}${price ? ` · ${esc(formatMoney(price.amount, price.currency))} / ${esc(intervalLabel(price.interval, price.intervalCount))}` : ''}`],
      ['Status', `<span data-role="status-text">${esc(statusText)}</span>`],
    ];
    if (s.unlimited) rows.push(['Access', 'Unlimited']);
    if (s.trialEnd && s.status === 'trialing') rows.push(['Trial ends', esc(formatDate(s.trialEnd))]);
    if (live && s.currentPeriodEnd) rows.push([s.cancelAtPeriodEnd ? 'Ends on' : 'Renews on', `<span data-role="period-end">${esc(formatDate(s.currentPeriodEnd))}</span>`]);
    const next = live && s.scheduledChange;
    if (next) {
      const nextPlan = plans.find((p) => p.id === next.planId);
      const nextPrice = nextPlan?.prices?.find((p) => p.interval === next.interval && p.intervalCount === (next.intervalCount || 1));
      rows.push(['Then', `<span data-role="scheduled-change">${esc(nextPlan?.name || next.planId)}${nextPrice ? ` · ${esc(formatMoney(nextPrice.amount, nextPrice.currency))} / ${esc(intervalLabel(nextPrice.interval, nextPrice.intervalCount))}` : ''} from ${esc(formatDate(next.effectiveAt))}</span>`]);
    }
    if (upcoming) {
      const overage = (upcoming.lines || []).filter((l) => l.kind === 'overage').reduce((sum, l) => sum + l.amount, 0);
      rows.push(['Next invoice', `<span data-role="upcoming-invoice">${esc(formatMoney(upcoming.amountDue, upcoming.currency))}${upcoming.billedAt ? ` on ${esc(formatDate(upcoming.billedAt))}` : ''}${overage > 0 ? ` (includes ${esc(formatMoney(overage, upcoming.currency))} overage so far)` : ''}</span>`]);
    }
    const grace = s.status === 'past_due'
      ? `<div class="warning" part="grace-warning" role="alert">Your last payment failed. ${s.graceUntil ? `Update your payment method before ${esc(formatDate(s.graceUntil, true))} to keep access.` : 'Update your payment method to restore access.'}</div>` : '';
    const actions = [];
    if (live && !s.cancelAtPeriodEnd) actions.push('<button type="button" class="secondary" data-action="cancel" data-key="cancel" part="button cancel-button">Cancel subscription</button>');
    if (live && s.cancelAtPeriodEnd) actions.push('<button type="button" data-action="resume" data-key="resume" part="button resume-button">Resume subscription</button>');
    if (s.status !== 'none') actions.push('<button type="button" class="secondary" data-action="portal" data-key="portal" part="button portal-button">Manage payment methods</button>');
    const confirm = this._confirmCancel ? `<div class="card" role="dialog" aria-labelledby="cc" part="confirm"><p id="cc">Cancel at the end of the period (${esc(formatDate(s.currentPeriodEnd))})? You keep access until then.</p>
      <div class="actions"><button type="button" data-action="confirm-cancel" data-key="confirm-cancel">Yes, cancel</button><button type="button" class="secondary" data-action="keep" data-key="keep">Keep subscription</button></div></div>` : '';
    const paymentRows = payments.map((p) => `<tr><td>${esc(formatDate(p.createdAt))}</td><td>${esc(p.description || (p.kind === 'token_pack' ? 'Token pack' : 'Subscription'))}</td>
      <td class="amount">${esc(formatMoney(p.amount, p.currency))}${p.amountRefunded ? ` <span class="muted">(refunded ${esc(formatMoney(p.amountRefunded, p.currency))})</span>` : ''}</td><td>${esc(p.status)}</td>
      <td>${p.invoiceUrl ? `<a href="${esc(p.invoiceUrl)}" target="_blank" rel="noopener">Invoice</a>` : ''} ${p.receiptUrl ? `<a href="${esc(p.receiptUrl)}" target="_blank" rel="noopener">Receipt</a>` : ''}</td></tr>`).join('');
    const txRows = transactions.map((t) => `<tr><td>${esc(formatDate(t.createdAt, true))}</td><td>${esc(t.kind)}</td>
      <td class="amount">${t.amount > 0 ? '+' : ''}${esc(formatNumber(t.amount))}</td><td class="amount">${esc(formatNumber(t.balanceAfter))}</td></tr>`).join('');
    return `<section part="subscription" aria-labelledby="h-sub"><h2 id="h-sub">Subscription</h2>${grace}
        <dl>${rows.map(([k, v]) => `<dt>${k}</dt><dd>${v}</dd>`).join('')}</dl>
        <div class="actions">${actions.join('')}</div>${confirm}<div data-role="status" role="status" aria-live="polite"></div></section>
      <section part="payments" aria-labelledby="h-pay"><h2 id="h-pay">Payments</h2>${payments.length ? `<table><caption class="visually-hidden">Payments</caption>
        <thead><tr><th scope="col">Date</th><th scope="col">What</th><th scope="col" class="amount">Amount</th><th scope="col">Status</th><th scope="col"><span class="visually-hidden">Documents</span></th></tr></thead>
        <tbody>${paymentRows}</tbody></table>` : '<p class="muted">No payments yet.</p>'}</section>
      <section part="wallet" aria-labelledby="h-wallet"><h2 id="h-wallet">Token wallet</h2>${transactions.length ? `<table><caption class="visually-hidden">Wallet transactions</caption>
        <thead><tr><th scope="col">Date</th><th scope="col">Kind</th><th scope="col" class="amount">Tokens</th><th scope="col" class="amount">Balance</th></tr></thead>
        <tbody>${txRows}</tbody></table>` : '<p class="muted">No token transactions yet.</p>'}</section>`;
  }

  render(html) {
    super.render(html);
    const root = this.shadowRoot;
    const on = (action, fn) => root.querySelector(`[data-action=${action}]`)?.addEventListener('click', (e) => fn(e.currentTarget));
    on('cancel', () => { this._confirmCancel = true; this.render(this.view(this._data)); root.querySelector('[data-action=confirm-cancel]')?.focus(); });
    on('keep', () => { this._confirmCancel = false; this.render(this.view(this._data)); });
    on('confirm-cancel', (b) => this.act(b, async () => {
      await this.api('/api/subscriptions/me/cancel', { method: 'POST', body: {} });
      this._confirmCancel = false;
      window.dispatchEvent(new CustomEvent('billing:refresh'));
    }));
    on('resume', (b) => this.act(b, async () => {
      await this.api('/api/subscriptions/me/resume', { method: 'POST', body: {} });
      window.dispatchEvent(new CustomEvent('billing:refresh'));
    }));
    on('portal', (b) => this.act(b, async () => {
      const answer = await this.api('/api/billing-portal', { method: 'POST', body: { returnUrl: BillingElement.pageUrl().href } });
      this.go(answer.url, { kind: 'portal' });
    }));
  }
}

const elements = {
  'billing-pricing-table': BillingPricingTable,
  'billing-usage-meter': BillingUsageMeter,
  'billing-upgrade-prompt': BillingUpgradePrompt,
  'billing-token-shop': BillingTokenShop,
  'billing-payment-result': BillingPaymentResult,
  'billing-account': BillingAccount,
};
for (const [name, type] of Object.entries(elements)) {
  if (!customElements.get(name)) customElements.define(name, type);
}

export const BillingElements = { configure, formatMoney, BillingError };
window.BillingElements = BillingElements;
