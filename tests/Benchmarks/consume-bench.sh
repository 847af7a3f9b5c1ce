#!/usr/bin/env bash
# Benchmarks the consume hot path on this machine, in one run (shared/INFRA-NOTES.md: report ratios measured together).
#   1. pgbench runs the exact SQL of one consume (usage_consume_many with one spend, one durable transaction per spend) against the same
#      database at the same concurrency: the physical reference.
#   2. wrk drives POST /api/usage/consume (fresh idempotency key per request, many users) directly on the Usage service,
#      then through the gateway, at each concurrency.
# Prints throughput, p50/p99 latency and each ratio to pgbench at the same concurrency, and checks that the spends
# stored equal the 200 answers. Durable throughout: the 'up' profile's PostgreSQL with its defaults (fsync on,
# synchronous_commit on).
#
#   tests/Benchmarks/consume-bench.sh                 # starts 'deploy/billing up --detach' if it is not running, stops it after
#   BENCH_DURATION=10 BENCH_CONNECTIONS="16 64" BENCH_USERS=20000 BENCH_WARMUP=3 tests/Benchmarks/consume-bench.sh
#
# Loopback only; every load is bounded by BENCH_DURATION seconds.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
source "$REPO/deploy/lib/infra.sh"
source "$REPO/deploy/lib/stack.sh"

DURATION=${BENCH_DURATION:-10}
CONNECTIONS=${BENCH_CONNECTIONS:-16 64}
USERS=${BENCH_USERS:-20000}
THREADS=${BENCH_THREADS:-2}

command -v wrk > /dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v pgbench > /dev/null || { echo "pgbench is missing (PostgreSQL client)" >&2; exit 1; }

infra_profile up
stack_profile up
USAGE_URL="http://127.0.0.1:${SERVICE_PORT[usage]}"
GATEWAY_URL=$BILLING_GATEWAY_URL
DB="billing_usage${BILLING_DB_SUFFIX:-}"
PSQL=(psql -h 127.0.0.1 -p "$BILLING_PG_PORT" -U postgres -d "$DB" -v ON_ERROR_STOP=1 -qAt)

started=0
if ! curl -fsS -o /dev/null --max-time 3 "$GATEWAY_URL/health/ready" 2>/dev/null; then
  echo "starting the stack (deploy/billing up --detach)…"
  "$REPO/deploy/billing" up --detach > "$BILLING_DATA_DIR/bench-up.log" 2>&1 || { tail -n 30 "$BILLING_DATA_DIR/bench-up.log" >&2; exit 1; }
  started=1
fi
cleanup() { ((started)) && "$REPO/deploy/billing" down > /dev/null 2>&1 || true; }
trap cleanup EXIT

echo "PostgreSQL: fsync=$("${PSQL[@]}" -c 'SHOW fsync'), synchronous_commit=$("${PSQL[@]}" -c 'SHOW synchronous_commit')"

# Pro subscribers for this run, anchored a day ago: the current window is [anchor, anchor + 1 month), 250 each.
RUN=$(date +%s)
PREFIX="bench-$RUN-u"
"${PSQL[@]}" -c "INSERT INTO usage_subjects (user_id, plan_id, stripe_status, access, anchor, period_start, period_end, updated_at)
  SELECT '$PREFIX' || g, 'pro', 'active', 'full', date_trunc('second', now()) - interval '1 day',
         date_trunc('second', now()) - interval '1 day', date_trunc('second', now()) - interval '1 day' + interval '1 month', now()
  FROM generate_series(1, $USERS) g"
WS=$("${PSQL[@]}" -c "SELECT extract(epoch FROM anchor)::bigint FROM usage_subjects WHERE user_id = '${PREFIX}1'")
WE=$("${PSQL[@]}" -c "SELECT extract(epoch FROM anchor + interval '1 month')::bigint FROM usage_subjects WHERE user_id = '${PREFIX}1'")
TOKEN=$(BILLING_PROFILE=up "$REPO/deploy/billing" token --user bench-ai --scope billing.usage --ttl 7200)

declare -A PG_TPS
LOGDIR=$(mktemp -d)

percentile() { # <file of latencies in µs> <p>
  sort -n "$1" | awk -v p="$2" '{a[NR]=$1} END {i=int(NR*p/100); if (i<1) i=1; printf "%.2f", a[i]/1000}'
}

echo
printf '%-28s %5s %10s %9s %9s %12s %s\n' "what" "conns" "req/s" "p50 ms" "p99 ms" "× pgbench" "check"
for c in $CONNECTIONS; do
  rm -f "$LOGDIR"/pgbench_log.*
  out=$(cd "$LOGDIR" && pgbench -h 127.0.0.1 -p "$BILLING_PG_PORT" -U postgres -n -M prepared -c "$c" -j "$THREADS" -T "$DURATION" \
          -D users="$USERS" -D run="$RUN" -D ws="$WS" -D we="$WE" -f "$HERE/consume.pgbench.sql" -l "$DB" 2>&1)
  tps=$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' <<< "$out" | tail -n 1)
  [[ -n $tps ]] || { echo "$out" >&2; exit 1; }
  cat "$LOGDIR"/pgbench_log.* | awk '{print $3}' > "$LOGDIR/lat"
  PG_TPS[$c]=$tps
  printf '%-28s %5s %10.0f %9s %9s %12s %s\n' "pgbench (one consume)" "$c" "$tps" "$(percentile "$LOGDIR/lat" 50)" "$(percentile "$LOGDIR/lat" 99)" "1.00" ""
done

for target in usage gateway; do
  url=$USAGE_URL; [[ $target == gateway ]] && url=$GATEWAY_URL
  # Warm-up, not measured: JIT, connection pools, prepared statements.
  wrk -t "$THREADS" -c 64 -d "${BENCH_WARMUP:-3}s" -s "$HERE/consume.lua" "$url" -- "$USERS" "$PREFIX" "warm-$RUN-$target" "$TOKEN" > /dev/null 2>&1 || true
  for c in $CONNECTIONS; do
    keys="wrk-$RUN-$target-$c"
    out=$(wrk -t "$THREADS" -c "$c" -d "${DURATION}s" --timeout 10s -s "$HERE/consume.lua" "$url" -- "$USERS" "$PREFIX" "$keys" "$TOKEN" 2>&1)
    line=$(grep '^RESULT' <<< "$out") || { echo "$out" >&2; exit 1; }
    declare -A r=()
    for kv in ${line#RESULT }; do r[${kv%%=*}]=${kv#*=}; done
    sleep 1 # requests still in flight when wrk stopped finish (and commit) now
    stored=$("${PSQL[@]}" -c "SELECT count(*) FROM consumptions WHERE idempotency_key LIKE '$keys-%' AND allowed")
    rps=$(awk -v n="${r[requests]}" -v d="${r[duration_us]}" 'BEGIN {printf "%.0f", n / (d / 1e6)}')
    ratio=$(awk -v a="$rps" -v b="${PG_TPS[$c]}" 'BEGIN {printf "%.2f", a / b}')
    diff=$((stored - r[ok]))
    if ((diff == 0)); then check="stored $stored = 200s ${r[ok]}"
    elif ((diff > 0 && diff <= c)); then check="stored $stored = 200s ${r[ok]} + $diff answered after wrk stopped (≤ $c in flight)"
    else check="MISMATCH stored $stored vs 200s ${r[ok]}"; fi
    ((r[other] > 0 || r[socket_errors] > 0)) && check+="; non-200: ${r[other]}, socket errors: ${r[socket_errors]}"
    printf '%-28s %5s %10s %9.2f %9.2f %12s %s\n' "consume via $target" "$c" "$rps" \
      "$(awk -v v="${r[p50_us]}" 'BEGIN {print v/1000}')" "$(awk -v v="${r[p99_us]}" 'BEGIN {print v/1000}')" "$ratio" "$check"
  done
done
rm -rf "$LOGDIR"
