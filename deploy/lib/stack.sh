# shellcheck shell=bash
# Starts and stops Billing's own processes (four services, the gateway, the Stripe simulator) for a profile,
# from their build output folders, each with its PID recorded; stops only those PIDs. Sourced by deploy/billing.

STACK_SERVICES=(subscriptions payments usage wallet)

stack_profile() { # <up|test>
  local profile=$1 base
  case $profile in
    up) base=8080; SIM_PORT=${BILLING_SIM_PORT:-12111} ;;
    test) base=18080; SIM_PORT=${BILLING_SIM_PORT:-22111} ;;
    *) echo "unknown profile $profile" >&2; return 2 ;;
  esac
  base=${BILLING_PORT_BASE:-$base}
  GATEWAY_PORT=${BILLING_GATEWAY_PORT:-$base}
  declare -gA SERVICE_PORT=([subscriptions]=$((base + 1)) [payments]=$((base + 2)) [usage]=$((base + 3)) [wallet]=$((base + 4)))
  STACK_DIR="$BILLING_DATA_DIR/stack"
  mkdir -p "$STACK_DIR/pids" "$STACK_DIR/logs"
  export BILLING_GATEWAY_URL="http://127.0.0.1:$GATEWAY_PORT"
  # A local HS256 key, made once per profile and kept in the ignored data folder.
  if [[ -z ${BILLING_JWT_SIGNING_KEY:-} ]]; then
    [[ -s $BILLING_DATA_DIR/jwt.key ]] || (umask 077; openssl rand -hex 32 > "$BILLING_DATA_DIR/jwt.key")
    BILLING_JWT_SIGNING_KEY=$(cat "$BILLING_DATA_DIR/jwt.key")
  fi
  export BILLING_JWT_SIGNING_KEY
  export STRIPE_WEBHOOK_SECRET=${STRIPE_WEBHOOK_SECRET:-whsec_billing_local_dev_secret}
  # Real Stripe only when a key is set and no API base overrides it; otherwise the simulator.
  if [[ -n ${STRIPE_SECRET_KEY:-} && -z ${STRIPE_API_BASE:-} ]]; then
    STACK_SIMULATOR=0
  else
    STACK_SIMULATOR=1
    export STRIPE_API_BASE=${STRIPE_API_BASE:-http://127.0.0.1:$SIM_PORT}
    export STRIPE_SECRET_KEY=${STRIPE_SECRET_KEY:-sk_test_billing_simulator}
  fi
  export BILLING_CATALOG=${BILLING_CATALOG:-$REPO/deploy/catalogs/default.json}
  # A relative path is the caller's (README: BILLING_CATALOG=deploy/catalogs/….json deploy/billing up): each service runs
  # from its own output folder, where it would name no file.
  [[ $BILLING_CATALOG == /* ]] || BILLING_CATALOG=$PWD/$BILLING_CATALOG
  export BILLING_DB_SUFFIX=${BILLING_DB_SUFFIX:-}
  export BILLING_QUEUE_PREFIX=${BILLING_QUEUE_PREFIX:-}
}

# Folder, assembly and port of each process.
_stack_app() { # name -> "dir dll port"
  case $1 in
    gateway) echo "$REPO/gateway/Billing.Gateway Billing.Gateway $GATEWAY_PORT" ;;
    simulator) echo "$REPO/tests/Billing.StripeSimulator Billing.StripeSimulator $SIM_PORT" ;;
    *) local cap; cap="$(tr '[:lower:]' '[:upper:]' <<< "${1:0:1}")${1:1}"
       echo "$REPO/services/$cap/Billing.$cap.Api Billing.$cap.Api ${SERVICE_PORT[$1]}" ;;
  esac
}

stack_names() {
  local names=()
  [[ $STACK_SIMULATOR == 1 ]] && names+=(simulator)
  names+=("${STACK_SERVICES[@]}" gateway)
  echo "${names[@]}"
}

stack_build() {
  local started=$SECONDS
  if [[ ${BILLING_NO_BUILD:-0} == 1 ]]; then
    echo "not building (BILLING_NO_BUILD=1)"
    return 0
  fi
  echo "building (Release)…"
  if ! dotnet build "$REPO/Billing.sln" -c Release -nologo -v q -clp:ErrorsOnly > "$BILLING_DATA_DIR/build.log" 2>&1; then
    cat "$BILLING_DATA_DIR/build.log" >&2
    echo "build failed (log: $BILLING_DATA_DIR/build.log)" >&2
    return 1
  fi
  echo "built in $((SECONDS - started)) s"
}

_pid_alive() { [[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

_stack_env_for() { # name -> env assignments for that process
  local name=$1
  local pg="Host=127.0.0.1;Port=$BILLING_PG_PORT;Username=postgres;Maximum Pool Size=100;Timeout=5"
  echo "ASPNETCORE_ENVIRONMENT=${ASPNETCORE_ENVIRONMENT:-Production}"
  echo "DOTNET_CLI_TELEMETRY_OPTOUT=1"
  case $name in
    simulator)
      echo "SIM_WEBHOOK_URL=${SIM_WEBHOOK_URL:-$BILLING_GATEWAY_URL/webhooks/stripe}"
      echo "SIM_PUBLIC_URL=http://127.0.0.1:$SIM_PORT"
      # Billing's databases outlive a restart, so the simulator's Stripe state must too.
      echo "SIM_STATE_FILE=$BILLING_DATA_DIR/simulator-state.json" ;;
    gateway)
      # The click-through demo at /demo (sign in as anyone): only on the simulator, never with real Stripe or OIDC.
      [[ $STACK_SIMULATOR == 1 ]] && echo "BILLING_DEMO=${BILLING_DEMO:-1}"
      # Socket completions (Kestrel's reads, Usage's answers) run on the epoll thread instead of a hop through the thread
      # pool: the gateway only moves bytes and never blocks there. 6 paired runs at 16 connections, 2026-11-27: 5 faster.
      echo "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=${GATEWAY_INLINE_COMPLETIONS:-1}"
      local s
      for s in "${STACK_SERVICES[@]}"; do
        echo "ReverseProxy__Clusters__${s}__Destinations__main__Address=http://127.0.0.1:${SERVICE_PORT[$s]}/"
      done ;;
    *)
      echo "ConnectionStrings__Database=$pg;Database=billing_${name}${BILLING_DB_SUFFIX}"
      echo "RabbitMq__Host=127.0.0.1"
      echo "RabbitMq__Port=$BILLING_RABBIT_PORT"
      echo "RabbitMq__QueuePrefix=$BILLING_QUEUE_PREFIX"
      echo "BILLING_PUBLIC_URL=${BILLING_PUBLIC_URL:-$BILLING_GATEWAY_URL}"
      # Local runs on the simulator: Billing's clock follows simulated time (like a Stripe test clock).
      [[ $STACK_SIMULATOR == 1 ]] && echo "BILLING_CLOCK_URL=$STRIPE_API_BASE/_sim/clock"
      local s
      for s in "${STACK_SERVICES[@]}"; do
        echo "Services__${s}=http://127.0.0.1:${SERVICE_PORT[$s]}"
      done ;;
  esac
}

stack_start_one() {
  local name=$1 dir dll port pidfile log
  read -r dir dll port <<< "$(_stack_app "$name")"
  pidfile="$STACK_DIR/pids/$name.pid"; log="$STACK_DIR/logs/$name.log"
  if _pid_alive "$pidfile"; then
    return 0
  fi
  local out="$dir/bin/Release/net10.0"
  [[ -f $out/$dll.dll ]] || { echo "$out/$dll.dll is missing: build first" >&2; return 1; }
  local -a envs
  mapfile -t envs < <(_stack_env_for "$name")
  (
    cd "$out"
    exec env "${envs[@]}" dotnet "$dll.dll" --urls "http://127.0.0.1:$port" >> "$log" 2>&1 < /dev/null
  ) &
  echo $! > "$pidfile"
  disown "$!" 2>/dev/null || true # stopped by PID, not as a job of this shell
}

stack_start() {
  local name
  for name in $(stack_names); do stack_start_one "$name"; done
}

stack_wait_ready() { # [timeout seconds]
  local timeout=${1:-120} deadline=$((SECONDS + ${1:-120})) name dir dll port pending
  while :; do
    pending=()
    for name in $(stack_names); do
      read -r dir dll port <<< "$(_stack_app "$name")"
      local path=/health/ready
      [[ $name == simulator ]] && path=/_sim/clock
      if ! _pid_alive "$STACK_DIR/pids/$name.pid"; then
        echo "$name exited; last lines of $STACK_DIR/logs/$name.log:" >&2
        tail -n 30 "$STACK_DIR/logs/$name.log" >&2 || true
        return 1
      fi
      curl -fsS -o /dev/null --max-time 3 "http://127.0.0.1:$port$path" 2>/dev/null || pending+=("$name")
    done
    ((${#pending[@]} == 0)) && return 0
    if ((SECONDS >= deadline)); then
      echo "not ready after ${timeout}s: ${pending[*]} (logs in $STACK_DIR/logs)" >&2
      return 1
    fi
    sleep 0.5
  done
}

# Restarts only the four services (e.g. with another BILLING_CATALOG); the simulator, gateway and infra keep running.
stack_restart_services() {
  local name pidfile pid i
  for name in "${STACK_SERVICES[@]}"; do
    pidfile="$STACK_DIR/pids/$name.pid"
    [[ -s $pidfile ]] || continue
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    rm -f "$pidfile"
  done
  for name in "${STACK_SERVICES[@]}"; do stack_start_one "$name"; done
}

stack_stop() {
  local name pidfile pid i
  for name in gateway "${STACK_SERVICES[@]}" simulator; do
    pidfile="$STACK_DIR/pids/$name.pid"
    [[ -s $pidfile ]] || continue
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
    fi
  done
  for name in gateway "${STACK_SERVICES[@]}" simulator; do
    pidfile="$STACK_DIR/pids/$name.pid"
    [[ -s $pidfile ]] || continue
    pid=$(cat "$pidfile")
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    rm -f "$pidfile"
  done
}

# Runs Subscriptions' catalog command (check FILE | push [FILE]) with the profile's Stripe settings.
stack_catalog() {
  local dll="$REPO/services/Subscriptions/Billing.Subscriptions.Api/bin/Release/net10.0/Billing.Subscriptions.Api.dll"
  [[ -f $dll ]] || stack_build
  dotnet "$dll" catalog "$@"
}

stack_status() {
  local name dir dll port state
  for name in $(stack_names); do
    read -r dir dll port <<< "$(_stack_app "$name")"
    if _pid_alive "$STACK_DIR/pids/$name.pid"; then state="running pid $(cat "$STACK_DIR/pids/$name.pid")"; else state="stopped"; fi
    printf '  %-14s http://127.0.0.1:%-6s %-22s log %s\n' "$name" "$port" "$state" "$STACK_DIR/logs/$name.log"
  done
}
