// The demo app: uses only Billing's web elements, plus two local-mode endpoints of the gateway (sign in as anyone;
// a pretend AI action that consumes through the usage API with a server-side service token).
import { configure } from '/elements/billing.js';

const $ = (id) => document.getElementById(id);
const store = window.sessionStorage;
const session = () => JSON.parse(store.getItem('billing-demo-session') || 'null');

configure({ gateway: window.location.origin + '/', getToken: () => session()?.userToken ?? null });

async function signIn(userId) {
  const response = await fetch('/demo/api/session', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ userId }) });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.title || (response.status === 404 ? 'The demo sign-in is switched off (BILLING_DEMO is not 1).' : 'Sign-in failed.'));
  store.setItem('billing-demo-session', JSON.stringify(body));
}

async function meterOfUser() {
  const wanted = new URL(window.location.href).searchParams.get('meter');
  if (wanted) return wanted;
  const response = await fetch('/api/usage/me', { headers: { Authorization: `Bearer ${session().userToken}` } });
  const usage = response.ok ? await response.json() : { meters: [] };
  return usage.meters?.[0]?.meter || 'ai.generation';
}

let meter = 'ai.generation';
let count = 0;

async function generate(quantity) {
  const button = $('generate-button');
  const status = $('generate-status');
  button.disabled = true;
  status.textContent = quantity > 1 ? `Spending ${quantity}…` : 'Generating…';
  try {
    const response = await fetch('/demo/api/generate', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${session().userToken}` },
      body: JSON.stringify({ meter, quantity, idempotencyKey: `demo-${crypto.randomUUID()}` }),
    });
    const body = await response.json().catch(() => ({}));
    if (response.ok) {
      count += 1;
      const item = document.createElement('li');
      item.textContent = quantity > 1
        ? `Spent ${quantity} at once (demo shortcut).`
        : `Quiz #${count}: “${['Which planet has the most moons?', 'Who wrote Middlemarch?', 'What is 7 × 8?', 'Which gas do plants take in?'][count % 4]}” (from ${body.source})`;
      $('outputs').prepend(item);
      status.textContent = body.source === 'tokens'
        ? `Generated, paid with tokens (${new Intl.NumberFormat().format(body.tokenBalance)} left).`
        : 'Generated.';
      window.dispatchEvent(new CustomEvent('billing:consumed', { detail: body }));
    } else if (response.status === 402) {
      status.textContent = body.title || 'Not allowed.';
      window.dispatchEvent(new CustomEvent('billing:refused', { detail: body }));
    } else if (response.status === 401) {
      store.removeItem('billing-demo-session');
      show();
    } else {
      status.textContent = body.title || `Something went wrong (${response.status}).`;
    }
  } catch {
    status.textContent = 'The gateway cannot be reached.';
  } finally {
    button.disabled = false;
  }
}

async function useUp() {
  const response = await fetch('/api/usage/me', { headers: { Authorization: `Bearer ${session().userToken}` } });
  const usage = await response.json();
  const m = usage.meters.find((x) => x.meter === meter);
  if (m && m.remaining > 0) await generate(m.remaining);
  else $('generate-status').textContent = 'Nothing left to use up.';
}

async function show() {
  const s = session();
  $('sign-in').hidden = !!s;
  $('app').hidden = !s;
  $('who').hidden = !s;
  $('header-meter').hidden = !s;
  if (!s) { $('user-id').focus(); return; }
  $('who-name').textContent = s.userId;
  meter = await meterOfUser();
  $('meter-name').textContent = meter;
  for (const id of ['meter', 'header-meter', 'prompt']) $(id).setAttribute('meter', meter);
  window.dispatchEvent(new CustomEvent('billing:refresh'));
}

$('sign-in-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  $('sign-in-error').textContent = '';
  try {
    await signIn($('user-id').value.trim());
    await show();
  } catch (error) {
    $('sign-in-error').textContent = error.message;
  }
});
$('sign-out').addEventListener('click', () => { store.removeItem('billing-demo-session'); show(); });
$('generate-button').addEventListener('click', () => generate(1));
$('use-up').addEventListener('click', useUp);
window.addEventListener('billing:sign-in-required', () => { store.removeItem('billing-demo-session'); show(); });
window.addEventListener('billing:upgrade', () => $('pricing').scrollIntoView({ behavior: 'smooth' }));
show();
