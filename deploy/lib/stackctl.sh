#!/usr/bin/env bash
# stackctl.sh <profile> kill9|stop|start|restart <service>: one process of a profile's running stack, for fault tests
# and benchmarks. <service> is one of subscriptions, payments, usage, wallet, gateway, simulator.
#   kill9    SIGKILL the recorded PID (a crash: no graceful shutdown, in-flight requests are cut off)
#   stop     SIGTERM, then SIGKILL after 10 s
#   start    start it again from its build output (stack_start_one) and wait until it answers /health/ready
#   restart  stop + start
# Only the PID recorded in <data dir>/stack/pids/<service>.pid is ever signalled, and only when that process is the
# service's own dotnet process. Honours the same environment overrides as deploy/billing and deploy/lib/run-tests.sh
# (BILLING_DATA_DIR, BILLING_PORT_BASE, BILLING_SIM_PORT, BILLING_PG_PORT, BILLING_RABBIT_*, BILLING_DB_SUFFIX,
# BILLING_QUEUE_PREFIX, BILLING_CATALOG, STRIPE_*), so a test started by run-tests.sh reaches the same stack.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

usage() { echo "usage: $0 <up|test> kill9|stop|start|restart <service>" >&2; exit 2; }
(($# == 3)) || usage
profile=$1 action=$2 name=$3

# A started service must not belong to the caller's session or process group (a test host, a terminal): it is the
# stack's, stopped later by its recorded PID like every other process of the stack.
if [[ -z ${STACKCTL_DETACHED:-} ]] && command -v setsid >/dev/null; then
  export STACKCTL_DETACHED=1
  exec setsid -w bash "${BASH_SOURCE[0]}" "$@"
fi

# shellcheck source=infra.sh
source "$REPO/deploy/lib/infra.sh"
# shellcheck source=stack.sh
source "$REPO/deploy/lib/stack.sh"
infra_profile "$profile"
stack_profile "$profile"

case $name in
  subscriptions|payments|usage|wallet|gateway|simulator) ;;
  *) echo "stackctl: unknown service '$name'" >&2; usage ;;
esac
[[ $name != simulator || $STACK_SIMULATOR == 1 ]] || { echo "stackctl: this profile runs on real Stripe: no simulator" >&2; exit 2; }

pidfile="$STACK_DIR/pids/$name.pid"
read -r _dir dll port <<< "$(_stack_app "$name")"

# The recorded PID, if it is alive and really is this service (a reused PID is left alone).
recorded_pid() {
  local pid
  [[ -s $pidfile ]] || return 1
  read -r pid < "$pidfile" || return 1
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dll.dll" || return 1
  echo "$pid"
}

wait_gone() { # <pid> <seconds>
  local pid=$1 i
  for ((i = 0; i < $2 * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    # a zombie child of ours counts as gone
    [[ $(awk '/^State:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) == Z ]] && return 0
    sleep 0.1
  done
  return 1
}

do_kill9() {
  local pid
  if ! pid=$(recorded_pid); then
    echo "stackctl: $name is not running (no live PID in $pidfile)" >&2
    return 1
  fi
  kill -KILL "$pid"
  wait_gone "$pid" 10 || { echo "stackctl: $name (PID $pid) survived SIGKILL" >&2; return 1; }
  rm -f "$pidfile"
  echo "$name killed (SIGKILL, PID $pid)"
}

do_stop() {
  local pid
  pid=$(recorded_pid) || { rm -f "$pidfile"; echo "$name was not running"; return 0; }
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" 10; then
    kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 5 || { echo "stackctl: $name (PID $pid) survived SIGKILL" >&2; return 1; }
  fi
  rm -f "$pidfile"
  echo "$name stopped (PID $pid)"
}

do_start() {
  local path=/health/ready deadline started=$SECONDS
  [[ $name == simulator ]] && path=/_sim/clock
  if recorded_pid >/dev/null; then
    echo "$name already running (PID $(cat "$pidfile"))"
  else
    rm -f "$pidfile"
    stack_start_one "$name"
  fi
  deadline=$((SECONDS + ${STACKCTL_READY_TIMEOUT:-60}))
  until curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$port$path" 2>/dev/null; do
    if ! _pid_alive "$pidfile"; then   # (its cmdline is bash for a moment, before the exec of dotnet)
      echo "stackctl: $name exited while starting; last lines of $STACK_DIR/logs/$name.log:" >&2
      tail -n 20 "$STACK_DIR/logs/$name.log" >&2 || true
      return 1
    fi
    if ((SECONDS >= deadline)); then
      echo "stackctl: $name not ready on 127.0.0.1:$port$path after ${STACKCTL_READY_TIMEOUT:-60} s (log $STACK_DIR/logs/$name.log)" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "$name ready on 127.0.0.1:$port (PID $(cat "$pidfile")) in $((SECONDS - started)) s"
}

case $action in
  kill9) do_kill9 ;;
  stop) do_stop ;;
  start) do_start ;;
  restart) do_stop && do_start ;;
  *) usage ;;
esac
