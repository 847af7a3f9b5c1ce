#!/usr/bin/env bash
# Benchmarks the consume hot path on this machine, in one run (shared/INFRA-NOTES.md: report ratios measured together).
#   1. pgbench runs the exact SQL of one consume (usage_consume_many with one spend, one durable transaction per spend) against the same
#      database at the same concurrency: the physical reference.
#   2. wrk drives POST /api/usage/consume (fresh idempotency key per request, many users) directly on the Usage service,
#      then through the gateway, at each concurrency.
#   Both in BENCH_ROUNDS rounds (3): a round is pgbench, then each target, at one concurrency, back to back; each ratio
#   is to its own round's pgbench figure, and the goals are judged on the median of the rounds.
# Prints throughput, p50/p99 latency and each ratio to pgbench at the same concurrency, and checks that the spends
# stored equal the 200 answers. The latencies are the requests' own, from consume.lua's per-request log; wrk's own
# figures are not: wrk 4 adds made-up latencies below every slow answer (its correction for coordinated omission,
# stats_correct), so its p99 reads higher. Each row's check shows wrk's too. Durable throughout: the 'up' profile's
# PostgreSQL with its defaults (fsync on, synchronous_commit on). Also prints where the CPU went, in µs per request (or
# per pgbench transaction): PostgreSQL (all its processes), Usage, the gateway and the load generator, from /proc over
# the middle of each run; on a machine whose cores are all busy, throughput is the cores divided by the sum of these.
# And whether the host ran this machine at full speed: host-probe.c, pinned to each CPU at real-time priority, times a
# fixed piece of arithmetic every millisecond during each measured run. On this virtual machine the host sometimes runs
# every vCPU at about a tenth of its speed for 5-60 ms, and every request in flight waits for that (decision 0006,
# twenty-third session). Each row's check says how long that lasted, and the p99 of that run's requests without the
# ones such a slowdown overlapped. BENCH_HOST_PROBE=0 leaves the probe out (it
# needs cc, taskset and the right to use real-time priority, and uses ~2 % of each CPU).
#
#   tests/Benchmarks/consume-bench.sh                 # starts 'deploy/billing up --detach' if it is not running, stops it after
#   BENCH_KEEP=1 keeps the run's spends and users in the database afterwards (by default they are deleted at the end).
#   BENCH_DURATION=10 BENCH_ROUNDS=3 BENCH_CONNECTIONS="16 64" BENCH_USERS=20000 BENCH_WARMUP=15 (45 when it starts the stack) BENCH_TARGETS="usage gateway" BENCH_HOST_PROBE=1 tests/Benchmarks/consume-bench.sh
#
# Loopback only; every load is bounded by BENCH_DURATION seconds.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
source "$REPO/deploy/lib/infra.sh"
source "$REPO/deploy/lib/stack.sh"

DURATION=${BENCH_DURATION:-10}
((DURATION >= 6)) || { echo "BENCH_DURATION must be at least 6 seconds" >&2; exit 2; }
CONNECTIONS=${BENCH_CONNECTIONS:-16 64}
USERS=${BENCH_USERS:-20000}
THREADS=${BENCH_THREADS:-2}

command -v wrk > /dev/null || { echo "wrk is missing: apt-get install -y wrk" >&2; exit 1; }
command -v pgbench > /dev/null || { echo "pgbench is missing (PostgreSQL client)" >&2; exit 1; }

infra_profile up
stack_profile up
USAGE_URL="http://127.0.0.1:${SERVICE_PORT[usage]}"
GATEWAY_URL=$BILLING_GATEWAY_URL
# A/B of gateway settings, side by side in the same rounds: start a second gateway yourself (the same environment as
# the stack's, plus the setting to try, on another port), name it in BENCH_GATEWAY2_URL and add 'gateway2' to
# BENCH_TARGETS. Its CPU column shows 0 for the gateway unless BENCH_GATEWAY2_PIDS="<its pid> [<pid of the Usage behind it>]"
# names the processes to measure instead of the stack's (to compare a second Usage behind a second gateway as well).
target_url() { # <target> -> its base URL
  case $1 in
    usage) echo "$USAGE_URL" ;;
    gateway) echo "$GATEWAY_URL" ;;
    gateway2) echo "${BENCH_GATEWAY2_URL:?BENCH_GATEWAY2_URL names the second gateway}" ;;
    *) echo "unknown target $1 (usage, gateway, gateway2)" >&2; exit 2 ;;
  esac
}
DB="billing_usage${BILLING_DB_SUFFIX:-}"
PSQL=(psql -h 127.0.0.1 -p "$BILLING_PG_PORT" -U postgres -d "$DB" -v ON_ERROR_STOP=1 -qAt)

# Starts the stack (and stops it at the end) only when none of it runs: a running stack that is not ready yet (a
# service restarting) is waited for, never started over or stopped behind its owner's back.
started=0
if ! curl -fsS -o /dev/null --max-time 3 "$GATEWAY_URL/health/ready" 2>/dev/null; then
  running=0
  for name in $(stack_names); do _pid_alive "$STACK_DIR/pids/$name.pid" && running=1; done
  if ((running)); then
    echo "the stack runs but is not ready: waiting for it (up to 90 s)…"
    stack_wait_ready 90 || { echo "the running stack did not become ready; see deploy/billing status" >&2; exit 1; }
  else
    echo "starting the stack (deploy/billing up --detach)…"
    "$REPO/deploy/billing" up --detach > "$BILLING_DATA_DIR/bench-up.log" 2>&1 || { tail -n 30 "$BILLING_DATA_DIR/bench-up.log" >&2; exit 1; }
    started=1
  fi
fi
# What the run stored goes again at the end (BENCH_KEEP=1 keeps it), so the tables do not grow by a million spends a
# run and later runs measure against the same database (and the VACUUM below stays short).
forget_run() {
  [[ ${BENCH_KEEP:-0} == 1 || -z ${RUN:-} ]] && return 0
  "${PSQL[@]}" -c "DELETE FROM consumptions WHERE (idempotency_key >= 'wrk-$RUN-' AND idempotency_key < 'wrk-$RUN.')
                     OR (idempotency_key >= 'warm-$RUN-' AND idempotency_key < 'warm-$RUN.')
                     OR (idempotency_key >= 'pgb-$RUN-' AND idempotency_key < 'pgb-$RUN.')" \
    -c "DELETE FROM usage_announcements WHERE user_id >= 'bench-$RUN-u' AND user_id < 'bench-$RUN-v'" \
    -c "DELETE FROM usage_counters WHERE user_id >= 'bench-$RUN-u' AND user_id < 'bench-$RUN-v'" \
    -c "DELETE FROM usage_subjects WHERE user_id >= 'bench-$RUN-u' AND user_id < 'bench-$RUN-v'" > /dev/null 2>&1 || true
}
cleanup() {
  forget_run
  ((started)) && "$REPO/deploy/billing" down > /dev/null 2>&1 || true
}
trap cleanup EXIT

echo "PostgreSQL: fsync=$("${PSQL[@]}" -c 'SHOW fsync'), synchronous_commit=$("${PSQL[@]}" -c 'SHOW synchronous_commit'), shared_buffers=$("${PSQL[@]}" -c 'SHOW shared_buffers')"
echo "consumptions already stored: $("${PSQL[@]}" -c 'SELECT count(*) FROM consumptions') (a run deletes its own at the end unless BENCH_KEEP=1)"

# Pro subscribers for this run, anchored a day ago: the current window is [anchor, anchor + 1 month), 250 each.
RUN=$(date +%s)
PREFIX="bench-$RUN-u"
"${PSQL[@]}" -c "INSERT INTO usage_subjects (user_id, plan_id, stripe_status, access, anchor, period_start, period_end, updated_at)
  SELECT '$PREFIX' || g, 'pro', 'active', 'full', date_trunc('second', now()) - interval '1 day',
         date_trunc('second', now()) - interval '1 day', date_trunc('second', now()) - interval '1 day' + interval '1 month', now()
  FROM generate_series(1, $USERS) g"
# Vacuumed and analysed now, so that autovacuum does not start in the middle of a measurement (it did: a pgbench run
# at 4,000 tps instead of 6,000, with PostgreSQL's CPU per transaction up by half).
"${PSQL[@]}" -c "VACUUM (ANALYZE) consumptions, usage_counters, usage_subjects"
WS=$("${PSQL[@]}" -c "SELECT extract(epoch FROM anchor)::bigint FROM usage_subjects WHERE user_id = '${PREFIX}1'")
WE=$("${PSQL[@]}" -c "SELECT extract(epoch FROM anchor + interval '1 month')::bigint FROM usage_subjects WHERE user_id = '${PREFIX}1'")
TOKEN=$(BILLING_PROFILE=up "$REPO/deploy/billing" token --user bench-ai --scope billing.usage --ttl 7200)

declare -A PG_TPS RATIO P99
declare -i MISMATCHES=0
declare -i NON_200=0
LOGDIR=$(mktemp -d)

# The host probe (host-probe.c): one per CPU, pinned, at real-time priority, during each measured run.
PROBE=
NCPU=$(nproc)
declare -a PROBE_PIDS=()
if [[ ${BENCH_HOST_PROBE:-1} == 1 ]]; then
  if ! command -v cc > /dev/null || ! command -v taskset > /dev/null; then
    echo "host probe: left out (it needs cc and taskset)"
  elif ! chrt -f 50 true 2> /dev/null; then
    echo "host probe: left out (real-time priority is not allowed here; at normal priority our own load would delay it)"
  elif cc -O2 -o "$LOGDIR/host-probe" "$HERE/host-probe.c"; then
    PROBE="$LOGDIR/host-probe"
  fi
fi
probe_start() { # <seconds>
  [[ -n $PROBE ]] || return 0
  local i
  rm -f "$LOGDIR"/probe.*
  for ((i = 0; i < NCPU; i++)); do
    taskset -c "$i" chrt -f 50 "$PROBE" "$1" > "$LOGDIR/probe.$i" 2> /dev/null &
    PROBE_PIDS+=($!)
  done
}
probe_wait() {
  ((${#PROBE_PIDS[@]})) && wait "${PROBE_PIDS[@]}" 2> /dev/null
  PROBE_PIDS=()
  return 0
}
# <file of "start_us latency_us" per request> -> "<slowdowns> <ms slowed> <% of the run> <% of requests overlapped>
# <p99 ms of the others>" (the p99 of all of them is the row's own). A slowdown: the probe's slow units (on any CPU) less than 5 ms apart, together
# longer than 2 ms, within the run (from the first request's start to the last answer).
host_report() {
  [[ -n $PROBE && -s $1 ]] || return 0
  local episodes="$LOGDIR/episodes"
  awk '{ printf "%.0f %.0f\n", $1 * 1e6 - $2, $1 * 1e6 }' "$LOGDIR"/probe.* | sort -n | awk '
    { if (n && $1 - e <= 5000) { if ($2 > e) e = $2 } else { if (n && e - s > 2000) print s, e; s = $1; e = $2; n = 1 } }
    END { if (n && e - s > 2000) print s, e }' > "$episodes"
  sort -n "$1" | awk -v episodes="$episodes" -v clear="$LOGDIR/lat.clear" '
    BEGIN { while ((getline line < episodes) > 0) { split(line, f, " "); m++; es[m] = f[1]; ee[m] = f[2] } j = 1 }
    { start = $1; end = $1 + $2; if (NR == 1) first = start; if (end > last) last = end
      while (j <= m && ee[j] < start) j++
      hit = 0; for (k = j; k <= m && es[k] <= end; k++) if (ee[k] >= start) { hit = 1; break }
      if (hit) overlapped++; else print $2 > clear; n++ }
    END { for (k = 1; k <= m; k++) if (ee[k] >= first && es[k] <= last) { count++; slowed += (ee[k] < last ? ee[k] : last) - (es[k] > first ? es[k] : first) }
          printf "%d %.0f %.1f %.1f", count, slowed / 1000, 100 * slowed / (last - first), 100 * overlapped / n }'
  printf ' %s' "$(percentile "$LOGDIR/lat.clear" 99)"
  rm -f "$LOGDIR/lat.clear"
}
declare -A ROUND_P99_CLEAR
declare -i HOST_SLOWED_MS=0 HOST_SLOWDOWNS=0 HOST_ROUNDS=0
HOST_TEXT=
host_check() { # <requests file> <row key or "">: sets HOST_TEXT, the text for the row's check column (not in a subshell:
  # it adds to the totals)
  local report
  HOST_TEXT=
  report=$(host_report "$1")
  [[ -n $report ]] || return 0
  local count ms pct overlapped p99clear
  read -r count ms pct overlapped p99clear <<< "$report"
  HOST_SLOWDOWNS+=$count; HOST_SLOWED_MS+=$ms; HOST_ROUNDS+=1
  [[ -n $2 ]] && ROUND_P99_CLEAR[$2]+="$p99clear "
  HOST_TEXT=$(printf 'host: %s slowdown(s), %s ms (%s %%); p99 %s ms without the %s %% of requests they overlapped' \
    "$count" "$ms" "$pct" "$p99clear" "$overlapped")
}

USAGE_PID=$(cat "$STACK_DIR/pids/usage.pid")
GATEWAY_PID=$(cat "$STACK_DIR/pids/gateway.pid")
CLK_TCK=$(getconf CLK_TCK)

snapshot() { # <load generator pid>: "pid group ticks" for PostgreSQL, Usage, the gateway and the load generator (one awk: fast under load)
  awk -v u="${MEASURED_USAGE_PID:-$USAGE_PID}" -v g="${MEASURED_GATEWAY_PID:-$GATEWAY_PID}" -v l="$1" '
    { pid = $1; group = ""
      if (pid == u) group = "usage"; else if (pid == g) group = "gateway"; else if (pid == l) group = "load"; else if ($2 == "(postgres)") group = "postgres"
      if (group != "") print pid, group, $14 + $15 }' /proc/[0-9]*/stat 2>/dev/null || true # a process that ends mid-read is skipped, not fatal
}

cpu_per_request() { # <before> <after> <seconds between> <requests per second>: "pg usage gateway load" in µs per request
  join <(sort "$1") <(sort "$2") | awk -v hz="$CLK_TCK" -v s="$3" -v r="$4" '
    { t[$2] += $5 - $3 }
    END { n = r * s; printf "%d/%d/%d/%d", t["postgres"] * 1e6 / hz / n, t["usage"] * 1e6 / hz / n, t["gateway"] * 1e6 / hz / n, t["load"] * 1e6 / hz / n }'
}

measure_cpu() { # <load generator pid> <run seconds> <file prefix>: samples from second 2 to second run-2 (all connected)
  local window=$(($2 - 4))
  sleep 2; snapshot "$1" > "$3.before"
  sleep "$window"; snapshot "$1" > "$3.after"
  echo "$window" > "$3.window"
}

percentile() { # <file of latencies in µs> <p>
  sort -n "$1" | awk -v p="$2" '{a[NR]=$1} END {i=int(NR*p/100); if (i<1) i=1; printf "%.2f", a[i]/1000}'
}

ROUNDS=${BENCH_ROUNDS:-3}
declare -A ROUND_RATIOS ROUND_P99 ROUND_P99_WRK

pgbench_round() { # <connections> <round>
  local c=$1 round=$2 load out tps cpu
  rm -f "$LOGDIR"/pgbench_log.*
  probe_start $((DURATION + 1))
  (cd "$LOGDIR" && exec pgbench -h 127.0.0.1 -p "$BILLING_PG_PORT" -U postgres -n -M prepared -c "$c" -j "$THREADS" -T "$DURATION" \
     -D users="$USERS" -D run="$RUN" -D ws="$WS" -D we="$WE" -f "$HERE/consume.pgbench.sql" -l "$DB" > "$LOGDIR/out" 2>&1) &
  load=$!
  measure_cpu "$load" "$DURATION" "$LOGDIR/cpu"
  wait "$load" || true
  probe_wait
  out=$(cat "$LOGDIR/out")
  tps=$(sed -nE 's/^tps = ([0-9.]+) .*/\1/p' <<< "$out" | tail -n 1)
  [[ -n $tps ]] || { echo "$out" >&2; exit 1; }
  # pgbench's log: client, transaction, latency µs, script, end (unix s, µs) -> "start_us latency_us" (for the host check)
  # and the latencies alone
  cat "$LOGDIR"/pgbench_log.* | awk '{ printf "%.0f %d\n", $5 * 1e6 + $6 - $3, $3 }' > "$LOGDIR/requests"
  awk '{ print $2 }' "$LOGDIR/requests" > "$LOGDIR/lat"
  PG_TPS[$c]=$tps
  cpu=$(cpu_per_request "$LOGDIR/cpu.before" "$LOGDIR/cpu.after" "$(cat "$LOGDIR/cpu.window")" "$tps")
  host_check "$LOGDIR/requests" ""
  printf '%-24s %5s %5s %8.0f %8s %8s %10s %-20s %s\n' "pgbench (one consume)" "$c" "$round" "$tps" "$(percentile "$LOGDIR/lat" 50)" "$(percentile "$LOGDIR/lat" 99)" "1.00" "$cpu" "$HOST_TEXT"
}

wrk_round() { # <target> <connections> <round>: against the pgbench figure of the same round
  local target=$1 c=$2 round=$3 url keys load out line stored rps ratio diff check cpu p99
  url=$(target_url "$target")
  keys="wrk-$RUN-$target-$c-$round"
  MEASURED_GATEWAY_PID=; MEASURED_USAGE_PID=
  [[ $target == gateway2 && -n ${BENCH_GATEWAY2_PIDS:-} ]] && read -r MEASURED_GATEWAY_PID MEASURED_USAGE_PID <<< "$BENCH_GATEWAY2_PIDS"
  rm -f "$LOGDIR"/requests.*
  probe_start $((DURATION + 1))
  wrk -t "$THREADS" -c "$c" -d "${DURATION}s" --timeout 10s -s "$HERE/consume.lua" "$url" -- "$USERS" "$PREFIX" "$keys" "$TOKEN" \
    "$LOGDIR/requests" > "$LOGDIR/out" 2>&1 &
  load=$!
  measure_cpu "$load" "$DURATION" "$LOGDIR/cpu"
  wait "$load" || true
  probe_wait
  out=$(cat "$LOGDIR/out")
  line=$(grep '^RESULT' <<< "$out") || { echo "$out" >&2; exit 1; }
  declare -A r=()
  for kv in ${line#RESULT }; do r[${kv%%=*}]=${kv#*=}; done
  sleep 1 # requests still in flight when wrk stopped finish (and commit) now
  # A key range, not LIKE: the cluster's collation (C.UTF-8) keeps LIKE off the key index, and a scan of a table of
  # millions between rounds took seconds.
  stored=$("${PSQL[@]}" -c "SELECT count(*) FROM consumptions WHERE idempotency_key >= '$keys-' AND idempotency_key < '$keys.' AND allowed")
  rps=$(awk -v n="${r[requests]}" -v d="${r[duration_us]}" 'BEGIN {printf "%.0f", n / (d / 1e6)}')
  ratio=$(awk -v a="$rps" -v b="${PG_TPS[$c]}" 'BEGIN {printf "%.2f", a / b}')
  diff=$((stored - r[ok]))
  if ((diff == 0)); then check="stored $stored = 200s ${r[ok]}"
  elif ((diff > 0 && diff <= c)); then check="stored $stored = 200s ${r[ok]} + $diff answered after wrk stopped (≤ $c in flight)"
  else check="MISMATCH stored $stored vs 200s ${r[ok]}"; fi
  ((r[other] > 0 || r[socket_errors] > 0)) && check+="; non-200: ${r[other]}, socket errors: ${r[socket_errors]}"
  # p50 and p99 of the requests themselves, from the per-request log (consume.lua, with LuaJIT's clock: from before
  # wrk's own start to after its own end, so never shorter than wrk's measure). wrk's own figures are not those: it
  # corrects them for coordinated omission, adding made-up latencies below every slow answer (decision 0006,
  # twenty-fourth session). They are printed in the check; they judge the goals only where the log is missing.
  local p50 p99 p99wrk why
  p99wrk=$(awk -v v="${r[p99_us]}" 'BEGIN {printf "%.2f", v/1000}')
  if compgen -G "$LOGDIR/requests.*" > /dev/null && [[ ${r[unlogged]:--1} == 0 ]]; then
    cat "$LOGDIR"/requests.* > "$LOGDIR/requests"
    awk '{ print $2 }' "$LOGDIR/requests" > "$LOGDIR/lat"
    p50=$(percentile "$LOGDIR/lat" 50); p99=$(percentile "$LOGDIR/lat" 99)
    check+="; wrk's own p99 (with its correction) $p99wrk ms"
    if [[ -n $PROBE ]]; then
      host_check "$LOGDIR/requests" "$target-$c"
      [[ -n $HOST_TEXT ]] && check+="; $HOST_TEXT"
    fi
  else
    p50=$(awk -v v="${r[p50_us]}" 'BEGIN {printf "%.2f", v/1000}'); p99=$p99wrk
    if [[ ${r[unlogged]:--1} == -1 ]]; then why="wrk has no LuaJIT clock"; else why="${r[unlogged]} answer(s) without the echoed X-Correlation-Id"; fi
    check+="; p50/p99 are wrk's own, with its correction (no per-request log: $why)"
  fi
  cpu=$(cpu_per_request "$LOGDIR/cpu.before" "$LOGDIR/cpu.after" "$(cat "$LOGDIR/cpu.window")" "$rps")
  printf '%-24s %5s %5s %8s %8.2f %8.2f %10s %-20s %s\n' "consume via $target" "$c" "$round" "$rps" \
    "$p50" "$p99" "$ratio" "$cpu" "$check"
  ROUND_RATIOS[$target-$c]+="$ratio "
  ROUND_P99[$target-$c]+="$p99 "
  ROUND_P99_WRK[$target-$c]+="$p99wrk "
  [[ $check == MISMATCH* ]] && MISMATCHES+=1
  NON_200=$((NON_200 + r[other] + r[socket_errors]))
  return 0
}

median() { # <numbers...>
  printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {printf "%.2f", (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}

# Warm-up, not measured: tiered JIT (its background compiles compete for the same 2 cores for ~15 s after a start),
# connection pools, prepared statements, the subscriber cache. A stack this script has just started gets 45 s: after 15 s
# its first round still cost Usage 4–5 times its steady CPU per consume (0.45× pgbench, then 0.96× on average; 2026-11-27).
WARMUP=${BENCH_WARMUP:-$((started ? 45 : 15))}
for target in ${BENCH_TARGETS:-usage gateway}; do
  url=$(target_url "$target")
  wrk -t "$THREADS" -c 64 -d "${WARMUP}s" -s "$HERE/consume.lua" "$url" -- "$USERS" "$PREFIX" "warm-$RUN-$target" "$TOKEN" > /dev/null 2>&1 || true
done

# Each round measures the reference and every target back to back at one concurrency, so that each ratio compares
# figures taken within half a minute of each other (the machine's other tenants move pgbench alone by ±30 % over an
# hour); the goals are judged on the median of the rounds' ratios, and every round is printed.
echo
printf '%-24s %5s %5s %8s %8s %8s %10s %-20s %s\n' "what" "conns" "round" "req/s" "p50 ms" "p99 ms" "× pgbench" "CPU µs pg/us/gw/load" "check"
for c in $CONNECTIONS; do
  for round in $(seq 1 "$ROUNDS"); do
    pgbench_round "$c" "$round"
    for target in ${BENCH_TARGETS:-usage gateway}; do
      wrk_round "$target" "$c" "$round"
    done
  done
done
rm -rf "$LOGDIR"

for key in "${!ROUND_RATIOS[@]}"; do
  # shellcheck disable=SC2086 # the lists are space-separated numbers
  RATIO[$key]=$(median ${ROUND_RATIOS[$key]})
  # shellcheck disable=SC2086
  P99[$key]=$(median ${ROUND_P99[$key]})
done

# The issue's goals, against this run's figures (medians over the rounds; each round's own ratio in brackets).
echo
goal() { # <label> <value> <op> <target> [rounds]
  if awk -v v="$2" -v t="$4" -v op="$3" 'BEGIN { exit !((op == ">=") ? v >= t : v < t) }'; then
    printf '  met      %-40s %5s (goal %s %s)  rounds: %s\n' "$1" "$2" "$3" "$4" "${5:-}"
  else
    printf '  NOT met  %-40s %5s (goal %s %s)  rounds: %s\n' "$1" "$2" "$3" "$4" "${5:-}"
  fi
}
echo "goals (median of $ROUNDS round(s)):"
[[ -n ${RATIO[gateway-16]:-} ]] && goal "through the gateway at 16, × pgbench" "${RATIO[gateway-16]}" ">=" 1.0 "${ROUND_RATIOS[gateway-16]}"
[[ -n ${RATIO[gateway-64]:-} ]] && goal "through the gateway at 64, × pgbench" "${RATIO[gateway-64]}" ">=" 1.5 "${ROUND_RATIOS[gateway-64]}"
[[ -n ${RATIO[usage-64]:-} ]] && goal "directly at 64, × pgbench" "${RATIO[usage-64]}" ">=" 2.0 "${ROUND_RATIOS[usage-64]}"
for c in $CONNECTIONS; do
  [[ -n ${P99[gateway-$c]:-} ]] && goal "p99 through the gateway at $c, ms" "${P99[gateway-$c]}" "<" 20 "${ROUND_P99[gateway-$c]}"
done
# Not a goal: the same p99 by wrk's own statistics, which add made-up latencies below each slow answer (its correction for
# coordinated omission), so that they read higher than the requests' own when some answers are slow.
for c in $CONNECTIONS; do
  # shellcheck disable=SC2086
  [[ -n ${ROUND_P99_WRK[gateway-$c]:-} ]] && printf '  (wrk'"'"'s own p99 through the gateway at %s, with its correction: %s ms  rounds: %s)\n' \
    "$c" "$(median ${ROUND_P99_WRK[gateway-$c]})" "${ROUND_P99_WRK[gateway-$c]}"
done
if ((HOST_ROUNDS)); then
  # Not goals: what the p99 goals would read on a host that never slowed this machine down (the requests that a
  # slowdown overlapped left out), to tell a miss of ours from the host's. The goals above count every request.
  echo "host slowdowns (host-probe.c): $HOST_SLOWDOWNS, ${HOST_SLOWED_MS} ms in all over $HOST_ROUNDS measured run(s) of ${DURATION} s"
  for c in $CONNECTIONS; do
    # shellcheck disable=SC2086
    [[ -n ${ROUND_P99_CLEAR[gateway-$c]:-} ]] && printf '  p99 through the gateway at %s of the requests no slowdown overlapped: %s ms  rounds: %s\n' \
      "$c" "$(median ${ROUND_P99_CLEAR[gateway-$c]})" "${ROUND_P99_CLEAR[gateway-$c]}"
  done
fi
# Every user has quota to spare, so any answer but 200 is a fault (a 500, a 502 from the gateway), not a refusal.
((NON_200 == 0)) && echo "  every request answered 200" || echo "  NOT 200: $NON_200 answer(s) or socket error(s) in all (see the rows' check)"
((MISMATCHES == 0)) && echo "  every run: spends stored = 200 answers" || { echo "  SPENDS STORED DIFFER FROM 200 ANSWERS in $MISMATCHES run(s)"; exit 1; }
