#!/usr/bin/env bash
# deploy/lib/infra-selftest.sh — exercise deploy/lib/infra.sh on a private third profile
# (ports 54340 / 56740-56742, data under .data/selftest/<run>): install, start, check, start again
# (no-op), kill -9 both servers and recover, stop, and prove nothing of ours is left running.
# Usage: deploy/lib/infra-selftest.sh [--keep]   (--keep: keep the data folder)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=deploy/lib/infra.sh
source "$HERE/infra.sh"

KEEP=0
[[ ${1:-} == --keep ]] && KEEP=1

mkdir -p "$BILLING_REPO/.data/selftest"
RUN_DIR=$(mktemp -d "$BILLING_REPO/.data/selftest/run-XXXXXX")
chmod 755 "$RUN_DIR"   # user postgres must be able to traverse it
export BILLING_DATA_DIR="$RUN_DIR"
export BILLING_PG_PORT=54340 BILLING_RABBIT_PORT=56740 BILLING_RABBIT_DIST_PORT=56741 BILLING_RABBIT_EPMD_PORT=56742
export BILLING_RABBIT_NODE=billing-selftest@localhost

PIDS=()      # every server PID this test saw
FAILS=0
pass() { printf 'ok    %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; FAILS=$((FAILS + 1)); }
t_now() { _infra_now; }
t_since() { _infra_since "$1"; }
pg_pid() { _infra_pg_pid || true; }
rabbit_pid() { _infra_rabbit_pid || true; }

cleanup() {
  local rc=$?
  trap - EXIT
  # leave nothing behind even when a step failed: stop through the library, then by recorded PID
  infra_stop >/dev/null 2>&1 || true
  local p
  for p in "${PIDS[@]}"; do
    _infra_pid_alive "$p" && { echo "cleanup: killing leftover PID $p"; kill -KILL "$p" 2>/dev/null || true; }
  done
  if ((rc == 0 && FAILS == 0 && KEEP == 0)); then
    rm -rf "$RUN_DIR"
  else
    echo "data and logs kept in $RUN_DIR"
  fi
  exit "$rc"
}
trap cleanup EXIT

check_pg() { # psql select 1
  local out
  out=$("$BILLING_PG_BIN/psql" -X -h 127.0.0.1 -p "$BILLING_PG_PORT" -U postgres -d postgres -tAc 'select 1' 2>&1) &&
    [[ $out == 1 ]]
}

check_amqp() { # raw TCP connect, send the AMQP 0-9-1 protocol header, expect a method frame (type 1) back
  local b
  exec {fd}<>"/dev/tcp/127.0.0.1/$BILLING_RABBIT_PORT" || return 1
  printf 'AMQP\x00\x00\x09\x01' >&"$fd"
  IFS= read -r -d '' -N 1 -t 5 b <&"$fd" || true
  exec {fd}>&-
  [[ $b == $'\x01' ]]
}

check_both() { # <label>
  check_pg && pass "$1: psql select 1 on 127.0.0.1:$BILLING_PG_PORT" || fail "$1: psql select 1 on 127.0.0.1:$BILLING_PG_PORT"
  check_amqp && pass "$1: AMQP handshake frame from 127.0.0.1:$BILLING_RABBIT_PORT" ||
    fail "$1: AMQP handshake frame from 127.0.0.1:$BILLING_RABBIT_PORT"
}

echo "selftest data folder: $RUN_DIR"
infra_profile test
[[ $BILLING_PG_PORT == 54340 && $RABBITMQ_NODE_PORT == 56740 && $ERL_EPMD_PORT == 56742 ]] &&
  pass "profile: overrides kept (pg 54340, amqp 56740, epmd 56742)" || fail "profile: overrides not kept"

t=$(t_now); infra_install; pass "infra_install ($(t_since "$t"))"

t=$(t_now); infra_pg_start; pass "infra_pg_start, cold with initdb ($(t_since "$t"))"
t=$(t_now); infra_rabbit_start; pass "infra_rabbit_start, cold ($(t_since "$t"))"
PG1=$(pg_pid) R1=$(rabbit_pid)
PIDS+=("$PG1" "$R1")
[[ -n $PG1 && -n $R1 ]] && pass "PIDs recorded: postgres $PG1, rabbitmq $R1" || fail "PIDs not recorded"
check_both "first start"

# only loopback listeners (ss is optional on a fresh machine)
if command -v ss >/dev/null; then
  bad=$(ss -Hltn | awk -v p="^($BILLING_PG_PORT|$BILLING_RABBIT_PORT|$BILLING_RABBIT_DIST_PORT|$BILLING_RABBIT_EPMD_PORT)\$" \
    '{ n = split($4, a, ":"); port = a[n]; addr = substr($4, 1, length($4) - length(port) - 1)
       if (port ~ p && addr != "127.0.0.1" && addr != "[::1]") print $4 }')
  [[ -z $bad ]] && pass "listeners on loopback only" || fail "non-loopback listeners: $bad"
fi

out=$(infra_rabbit_ctl -q authenticate_user guest guest 2>&1) && pass "rabbitmq: guest/guest authenticates" ||
  fail "rabbitmq: guest/guest: $out"
infra_create_db billing_selftest-db && infra_create_db billing_selftest-db &&
  [[ $("$BILLING_PG_BIN/psql" -X -h 127.0.0.1 -p "$BILLING_PG_PORT" -U postgres -d billing_selftest-db -tAc 'select 1') == 1 ]] &&
  pass "infra_create_db (twice) and connect" || fail "infra_create_db"
[[ $(infra_status | grep -c ' running ') == 2 ]] && pass "infra_status: 2 running" || fail "infra_status: $(infra_status)"

t=$(t_now); infra_start 2>/dev/null; dt=$(t_since "$t")
[[ $(pg_pid) == "$PG1" && $(rabbit_pid) == "$R1" ]] && pass "infra_start again is a no-op, same PIDs ($dt)" ||
  fail "second infra_start changed PIDs"

# crash both servers
kill -KILL "$PG1" "$R1"
_infra_wait_pid_gone "$PG1" 10 && _infra_wait_pid_gone "$R1" 10 && pass "kill -9 postgres $PG1 and rabbitmq $R1" ||
  fail "kill -9 did not end the servers"
[[ $(infra_status | grep -c ' stopped ') == 2 ]] && pass "infra_status after kill -9: 2 stopped" || fail "infra_status: $(infra_status)"
t=$(t_now); infra_pg_start; pass "infra_pg_start after kill -9 ($(t_since "$t"))"
t=$(t_now); infra_rabbit_start; pass "infra_rabbit_start after kill -9 ($(t_since "$t"))"
PG2=$(pg_pid) R2=$(rabbit_pid)
PIDS+=("$PG2" "$R2")
[[ -n $PG2 && -n $R2 && $PG2 != "$PG1" && $R2 != "$R1" ]] && pass "recovered with new PIDs: postgres $PG2, rabbitmq $R2" ||
  fail "recovery PIDs: postgres '$PG2', rabbitmq '$R2'"
check_both "after recovery"

# fault-test hook used by the lead: stop_app / start_app
infra_rabbit_ctl -q stop_app >/dev/null 2>&1 && ! _infra_port_open "$BILLING_RABBIT_PORT" &&
  infra_rabbit_ctl -q start_app >/dev/null 2>&1 && check_amqp && pass "infra_rabbit_ctl stop_app / start_app" ||
  fail "infra_rabbit_ctl stop_app / start_app"

t=$(t_now); infra_rabbit_stop; pass "infra_rabbit_stop ($(t_since "$t"))"
t=$(t_now); infra_pg_stop; pass "infra_pg_stop ($(t_since "$t"))"
t=$(t_now); infra_stop; pass "infra_stop when already stopped ($(t_since "$t"))"

# nothing of ours left: the recorded PIDs, the ports, and any process whose command line or
# environment mentions this run's data folder (postmaster -D, beam/epmd inherit RABBITMQ_* env)
left=()
for p in "${PIDS[@]}"; do _infra_pid_alive "$p" && left+=("$p"); done
((${#left[@]} == 0)) && pass "recorded PIDs gone: ${PIDS[*]}" || fail "still alive: ${left[*]}"
open=()
for port in "$BILLING_PG_PORT" "$BILLING_RABBIT_PORT" "$BILLING_RABBIT_DIST_PORT" "$BILLING_RABBIT_EPMD_PORT"; do
  _infra_port_open "$port" && open+=("$port")
done
((${#open[@]} == 0)) && pass "ports closed" || fail "ports still open: ${open[*]}"
strays=()
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [[ $p == "$$" || $p == "$BASHPID" ]] && continue
  _infra_pid_alive "$p" || continue
  if tr '\0' '\n' 2>/dev/null <"$d/cmdline" | grep -qF "$RUN_DIR" ||
    tr '\0' '\n' 2>/dev/null <"$d/environ" | grep -qxF "RABBITMQ_MNESIA_BASE=$RABBITMQ_MNESIA_BASE"; then
    strays+=("$p:$(cat "$d/comm" 2>/dev/null)")
  fi
done
((${#strays[@]} == 0)) && pass "no process refers to $RUN_DIR" || fail "stray processes: ${strays[*]}"

if ((FAILS)); then
  echo "infra selftest: $FAILS check(s) FAILED"
  exit 1
fi
echo "infra selftest: all checks passed"
