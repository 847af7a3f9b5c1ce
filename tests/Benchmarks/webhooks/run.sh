#!/usr/bin/env bash
# Webhook ingest benchmark against a running Billing (deploy/billing up --detach, or any profile/ports given by env):
#  1. accepted webhooks per second and ack latency (wrk, pre-signed unique Stripe events POSTed to the gateway's
#     /webhooks/stripe), with the CPU each process used meanwhile;
#  2. webhook-to-quota: K users pay on the simulator with delivery off, their events are sent signed through the gateway
#     user by user, and the time until GET /api/usage/me shows the quota is measured (p50/p95).
# env: BILLING_PROFILE (up) and the usual port overrides (BILLING_PORT_BASE, BILLING_SIM_PORT, BILLING_PG_PORT, …);
#      N (events, 40000) DURATION (s, 10) CONNECTIONS (32) THREADS (2) WARMUP (s, 3) K (20) PARALLEL (1) SKIP_QUOTA=1
# Goals on a 2-core machine: ≥ 1,500 webhooks/s accepted, ack p99 < 20 ms, webhook-to-quota p95 < 200 ms.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
source "$REPO/deploy/lib/infra.sh"
source "$REPO/deploy/lib/stack.sh"
PROFILE=${BILLING_PROFILE:-up}
infra_profile "$PROFILE"
stack_profile "$PROFILE"
GW=$BILLING_GATEWAY_URL
SIM="http://127.0.0.1:$SIM_PORT"
N=${N:-40000} DURATION=${DURATION:-10} CONNECTIONS=${CONNECTIONS:-32} THREADS=${THREADS:-2} WARMUP=${WARMUP:-3}

curl -fsS -o /dev/null --max-time 5 "$GW/health/ready" ||
  { echo "Billing is not running at $GW (profile $PROFILE): start it with deploy/billing up --detach" >&2; exit 1; }
command -v python3 >/dev/null || { echo "python3 is needed to sign the events" >&2; exit 1; }
if ! command -v wrk >/dev/null; then
  echo "installing wrk…"
  (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk) >/dev/null
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/billing-webhook-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# CPU seconds (user+system, children that exited included) of a PID and its live children, from /proc.
cpu_of() {
  local pid=$1 total=0 child
  [[ -r /proc/$pid/stat ]] || { echo 0; return; }
  total=$(awk '{ print $14 + $15 + $16 + $17 }' "/proc/$pid/stat")
  for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
    [[ -r /proc/$child/stat ]] && total=$((total + $(awk '{ print $14 + $15 }' "/proc/$child/stat")))
  done
  echo "$total"
}
declare -A PIDS=()
for name in gateway payments subscriptions usage simulator; do
  [[ -s $STACK_DIR/pids/$name.pid ]] && PIDS[$name]=$(cat "$STACK_DIR/pids/$name.pid")
done
PIDS[postgres]=$(head -n 1 "$BILLING_PG_DATA/postmaster.pid" 2>/dev/null || echo 0)
[[ -s $BILLING_RABBIT_PIDFILE ]] && PIDS[rabbitmq]=$(cat "$BILLING_RABBIT_PIDFILE")
snapshot() { local n; for n in "${!PIDS[@]}"; do echo "$n $(cpu_of "${PIDS[$n]}")"; done; }

RUN=$(openssl rand -hex 4)
echo "Billing at $GW (profile $PROFILE); signing $N events + warm-up with the webhook secret…"
RUN=w${RUN} python3 "$HERE/gen_events.py" $((WARMUP * 1500 + 1000)) "$STRIPE_WEBHOOK_SECRET" "$WORK/warmup.tsv"
RUN=$RUN python3 "$HERE/gen_events.py" "$N" "$STRIPE_WEBHOOK_SECRET" "$WORK/events.tsv"
echo "events: $(wc -l < "$WORK/events.tsv") lines, $(du -h "$WORK/events.tsv" | cut -f1), avg body $(( $(stat -c %s "$WORK/events.tsv") / N )) bytes"

echo "warm-up ${WARMUP}s…"
EVENTS_FILE="$WORK/warmup.tsv" WRK_THREADS=$THREADS wrk -t"$THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" -s "$HERE/webhooks.lua" "$GW" >/dev/null

echo "measuring ${DURATION}s: wrk -t$THREADS -c$CONNECTIONS --latency POST $GW/webhooks/stripe"
before=$(snapshot)
TIMEFORMAT='%U %S'
{ time EVENTS_FILE="$WORK/events.tsv" WRK_THREADS=$THREADS wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency \
    -s "$HERE/webhooks.lua" "$GW" > "$WORK/wrk.out" 2>&1 ; } 2> "$WORK/wrk.time" || { cat "$WORK/wrk.out"; exit 1; }
after=$(snapshot)
sed -n '/Latency Distribution/,/requests in/p' "$WORK/wrk.out"
grep -E 'Non-2xx|Socket errors' "$WORK/wrk.out" || true
result=$(grep '^RESULT' "$WORK/wrk.out")
val() { sed -E "s/.* $1=([^ ]+).*/\1/" <<< "$result"; }

stored=$("$BILLING_PG_BIN/psql" -X -h 127.0.0.1 -p "$BILLING_PG_PORT" -U postgres -d "billing_payments${BILLING_DB_SUFFIX:-}" -tAc \
  "SELECT count(*) FROM stripe_events WHERE id LIKE 'evt_bench${RUN}%'" 2>/dev/null || echo '?')
echo
echo "accepted webhooks/s : $(val accepted_per_s)   ($(val requests) requests in $(val seconds) s, $(val failed) failed, $stored stored, $(val wrapped) wraps)"
echo "ack latency         : p50 $(val p50_ms) ms   p90 $(val p90_ms) ms   p99 $(val p99_ms) ms   max $(val max_ms) ms"
ticks=$(getconf CLK_TCK)
echo -n "CPU during the run  :"
join <(sort <<< "$before") <(sort <<< "$after") | while read -r name b a; do
  printf ' %s %.1f s;' "$name" "$(awk -v d=$((a - b)) -v t="$ticks" 'BEGIN { print d / t }')"
done
printf ' wrk %.1f s (of %d cores x %s s)\n' "$(awk '{ print $1 + $2 }' "$WORK/wrk.time")" "$(nproc)" "$DURATION"
awk -v r="$(val accepted_per_s)" -v p="$(val p99_ms)" 'BEGIN {
  printf "goals               : >= 1500/s %s, p99 < 20 ms %s\n", (r >= 1500 ? "met" : "MISSED"), (p < 20 ? "met" : "MISSED") }'

if [[ ${SKIP_QUOTA:-0} != 1 ]]; then
  echo
  echo "webhook-to-quota: ${K:-20} users, ${PARALLEL:-1} at a time…"
  GW=$GW SIM=$SIM SECRET=$STRIPE_WEBHOOK_SECRET JWT_KEY=$BILLING_JWT_SIGNING_KEY K=${K:-20} PARALLEL=${PARALLEL:-1} \
    JWT_ISSUER=${BILLING_JWT_ISSUER:-billing-local} JWT_AUDIENCE=${BILLING_JWT_AUDIENCE:-billing} python3 "$HERE/quota.py" | tee "$WORK/quota.out"
  awk '/^RESULT/ { for (i = 1; i <= NF; i++) if ($i ~ /^p95_ms=/) { split($i, a, "="); printf "goal                : p95 < 200 ms %s\n", (a[2] < 200 ? "met" : "MISSED") } }' "$WORK/quota.out"
fi
