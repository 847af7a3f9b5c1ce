# shellcheck shell=bash
# deploy/lib/infra.sh — private PostgreSQL 15 + RabbitMQ on loopback, per profile (up | test).
#
# Sourced by deploy/billing. Safe under `set -euo pipefail`; sets no shell options itself.
# Layout, ports and process rules: docs/decisions/0001-local-layout.md, /work/shared/INFRA-NOTES.md.
#
#   infra_profile <up|test>   export the profile's ports, folders, connection data and RabbitMQ env
#   infra_install             apt-install what is missing (rabbitmq-server, postgresql-15); no-op otherwise
#   infra_pg_start / infra_pg_stop          private cluster in $BILLING_DATA_DIR/pg
#   infra_rabbit_start / infra_rabbit_stop  private node in $BILLING_DATA_DIR/rabbit
#   infra_rabbit_ctl <args…>  rabbitmqctl against the profile's node
#   infra_start / infra_stop / infra_status
#   infra_create_db <name>    create a database if missing
#
# Port overrides (env, before infra_profile): BILLING_PG_PORT, BILLING_RABBIT_PORT,
# BILLING_RABBIT_DIST_PORT, BILLING_RABBIT_EPMD_PORT; also BILLING_DATA_DIR, BILLING_RABBIT_NODE.
# Every process is stopped by the PID we recorded (postmaster.pid / rabbit.pid) — never by name.

BILLING_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
export BILLING_REPO
BILLING_PG_BIN="${BILLING_PG_BIN:-/usr/lib/postgresql/15/bin}"

# ---------------------------------------------------------------------------------------------- helpers
_infra_log() { printf 'infra: %s\n' "$*" >&2; }
_infra_err() { printf 'infra: ERROR: %s\n' "$*" >&2; }
_infra_now() { printf '%s' "${EPOCHREALTIME/,/.}"; }
_infra_since() { awk -v a="$1" -v b="$(_infra_now)" 'BEGIN { printf "%.1f s", b - a }'; }

_infra_need_profile() {
  [[ -n ${BILLING_PROFILE:-} && -n ${BILLING_DATA_DIR:-} ]] && return 0
  _infra_err "no profile selected: call infra_profile up|test first"
  return 1
}

# true if something accepts TCP connections on 127.0.0.1:<port>
_infra_port_open() {
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# true if <pid> is a live process (zombies count as gone)
_infra_pid_alive() {
  [[ $1 =~ ^[0-9]+$ ]] || return 1
  local st
  st=$(awk '/^State:/ { print $2 }' "/proc/$1/status" 2>/dev/null) || return 1
  [[ -n $st && $st != Z && $st != X ]]
}

# wait until <pid> is gone, up to <seconds>
_infra_wait_pid_gone() {
  local pid=$1 deadline=$((SECONDS + $2))
  while _infra_pid_alive "$pid"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

# Run a command with every fd above 2 closed, so a daemon it starts does not keep the caller's
# pipes (e.g. `deploy/billing up | tee`, `$(…)`) open.
_infra_close_extra_fds() { # only ever called inside a subshell
  local fd
  for fd in /proc/$BASHPID/fd/*; do
    fd=${fd##*/}
    ((fd > 2)) && eval "exec $fd>&-" 2>/dev/null
  done
  return 0
}
_infra_closefds() { (_infra_close_extra_fds; exec "$@"); }

# ---------------------------------------------------------------------------------------------- profile
# Variables that may be overridden from the environment. Whatever infra_profile itself set is
# remembered in _BILLING_INFRA_DEF_<VAR>, so switching profiles in one shell does not mistake the
# previous profile's value for an override.
_INFRA_OVERRIDABLE=(BILLING_DATA_DIR BILLING_PG_PORT BILLING_RABBIT_PORT BILLING_RABBIT_DIST_PORT
  BILLING_RABBIT_EPMD_PORT BILLING_RABBIT_NODE)

_infra_default() { # <var> <default>: keep a real override, else set (and remember) the default
  local var=$1 def=$2 mark="_BILLING_INFRA_DEF_$1"
  if [[ -z ${!var:-} || (-n ${!mark+x} && ${!var} == "${!mark}") ]]; then
    printf -v "$var" '%s' "$def"
    printf -v "$mark" '%s' "$def"
    export "${var?}" "${mark?}"
  else
    unset "$mark"
    export "${var?}"
  fi
}

infra_profile() {
  local p=${1:-}
  local pg rmq dist epmd
  case $p in
    up) pg=54320 rmq=56720 dist=56721 epmd=56722 ;;
    test) pg=54330 rmq=56730 dist=56731 epmd=56732 ;;
    *) _infra_err "infra_profile: expected 'up' or 'test', got '${p}'"; return 2 ;;
  esac
  export BILLING_PROFILE=$p
  _infra_default BILLING_DATA_DIR "$BILLING_REPO/.data/$p"
  _infra_default BILLING_PG_PORT "$pg"
  _infra_default BILLING_RABBIT_PORT "$rmq"
  _infra_default BILLING_RABBIT_DIST_PORT "$dist"
  _infra_default BILLING_RABBIT_EPMD_PORT "$epmd"
  _infra_default BILLING_RABBIT_NODE "billing-$p@localhost"
  local v
  for v in BILLING_PG_PORT BILLING_RABBIT_PORT BILLING_RABBIT_DIST_PORT BILLING_RABBIT_EPMD_PORT; do
    [[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} > 0 && ${!v} < 65536)) ||
      { _infra_err "$v='${!v}' is not a TCP port"; return 2; }
  done
  [[ $BILLING_DATA_DIR == /* ]] || BILLING_DATA_DIR="$PWD/$BILLING_DATA_DIR"   # override may be relative

  # PostgreSQL
  export BILLING_PG_DIR="$BILLING_DATA_DIR/pg"                # owned by user postgres
  export BILLING_PG_DATA="$BILLING_PG_DIR/data"
  export BILLING_PG_SOCKDIR="$BILLING_PG_DIR/run"
  export BILLING_PG_LOG="$BILLING_PG_DIR/postgres.log"
  export BILLING_PG_CONN_BASE="Host=127.0.0.1;Port=$BILLING_PG_PORT;Username=postgres;Password=postgres"

  # RabbitMQ: connection data for the apps
  export BILLING_RABBIT_HOST=127.0.0.1 BILLING_RABBIT_USER=guest BILLING_RABBIT_PASS=guest
  export BILLING_RABBIT_DIR="$BILLING_DATA_DIR/rabbit"
  export BILLING_RABBIT_HOME="$BILLING_RABBIT_DIR/home"        # holds the Erlang cookie
  export BILLING_RABBIT_PIDFILE="$BILLING_RABBIT_DIR/rabbit.pid"
  export BILLING_RABBIT_CONSOLE_LOG="$BILLING_RABBIT_DIR/log/console.log"
  export BILLING_RABBIT_LOG="$BILLING_RABBIT_DIR/log/$BILLING_RABBIT_NODE.log"

  # RabbitMQ: private server/CLI environment (INFRA-NOTES.md). HOME is deliberately NOT exported
  # here (it would move dotnet's/NuGet's caches for the whole caller); every rabbit command we run
  # gets HOME=$BILLING_RABBIT_HOME (see _infra_rabbit_run).
  export RABBITMQ_CONFIG_FILE="$BILLING_RABBIT_DIR/rabbitmq.conf"
  export RABBITMQ_CONF_ENV_FILE="$BILLING_RABBIT_DIR/rabbitmq-env.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$BILLING_RABBIT_DIR/enabled_plugins"
  export RABBITMQ_MNESIA_BASE="$BILLING_RABBIT_DIR/mnesia"
  export RABBITMQ_LOG_BASE="$BILLING_RABBIT_DIR/log"
  export RABBITMQ_PID_FILE="$BILLING_RABBIT_DIR/server.pid"    # written by RabbitMQ itself
  export RABBITMQ_NODENAME="$BILLING_RABBIT_NODE"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
  export RABBITMQ_NODE_PORT="$BILLING_RABBIT_PORT"
  export RABBITMQ_DIST_PORT="$BILLING_RABBIT_DIST_PORT"
  export ERL_EPMD_ADDRESS=127.0.0.1 ERL_EPMD_PORT="$BILLING_RABBIT_EPMD_PORT"
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"  # CLI node: loopback too
}

# ---------------------------------------------------------------------------------------------- install
_infra_rabbit_sbin() {
  local d
  for d in /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin; do
    [[ -x $d/rabbitmq-server && -x $d/rabbitmqctl ]] && { printf '%s\n' "$d"; return 0; }
  done
  return 1
}

infra_install() {
  local t0 b logf pkgs=()
  t0=$(_infra_now)
  _infra_rabbit_sbin >/dev/null && command -v epmd >/dev/null || pkgs+=(rabbitmq-server)
  for b in initdb pg_ctl postgres pg_isready psql; do
    [[ -x $BILLING_PG_BIN/$b ]] || { pkgs+=(postgresql-15 postgresql-client-15); break; }
  done
  command -v runuser >/dev/null || pkgs+=(util-linux)
  ((${#pkgs[@]})) || return 0
  if ((EUID != 0)); then
    _infra_err "missing ${pkgs[*]}; run infra_install as root (apt-get)"
    return 1
  fi
  logf=$(mktemp "${TMPDIR:-/tmp}/billing-infra-install.XXXXXX.log")
  _infra_log "installing ${pkgs[*]} via apt (log: $logf)"
  # A policy-rc.d that exits 101 keeps invoke-rc.d from starting a system RabbitMQ/epmd on the
  # default ports during the install; whatever policy-rc.d was there before is put back.
  (
    set -e
    pol=/usr/sbin/policy-rc.d bak=
    if [[ -e $pol || -L $pol ]]; then
      bak=$(mktemp /usr/sbin/.policy-rc.d.billing-save.XXXXXX)
      cp -a "$pol" "$bak"
    fi
    restore() { if [[ -n $bak ]]; then mv -f "$bak" "$pol"; else rm -f "$pol"; fi; }
    trap restore EXIT
    trap 'exit 130' INT TERM HUP
    printf '#!/bin/sh\n# temporary, from billing deploy/lib/infra.sh: start no services\nexit 101\n' >"$pol.billing-tmp"
    chmod 755 "$pol.billing-tmp"
    mv -f "$pol.billing-tmp" "$pol"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${pkgs[@]}"
  ) </dev/null >"$logf" 2>&1 || {
    _infra_err "apt-get install ${pkgs[*]} failed; last lines of $logf:"
    tail -n 20 "$logf" >&2
    return 1
  }
  _infra_rabbit_sbin >/dev/null ||
    { _infra_err "rabbitmq-server installed, but no /usr/lib/rabbitmq/lib/rabbitmq_server-*/sbin/rabbitmq-server"; return 1; }
  [[ -x $BILLING_PG_BIN/initdb ]] || { _infra_err "postgresql-15 installed, but no $BILLING_PG_BIN/initdb"; return 1; }
  rm -f "$logf"
  _infra_log "installed ${pkgs[*]} in $(_infra_since "$t0")"
}

# ---------------------------------------------------------------------------------------------- postgres
_infra_pg() { # run a PostgreSQL binary as user postgres (cwd / so it never trips over /root)
  local bin=$1; shift
  if ((EUID == 0)); then
    (cd / && _infra_closefds runuser -u postgres -- "$BILLING_PG_BIN/$bin" "$@")
  else
    (cd / && _infra_closefds "$BILLING_PG_BIN/$bin" "$@")
  fi
}

_infra_pg_pid() { # print the postmaster PID if our cluster is running
  local pid
  [[ -r $BILLING_PG_DATA/postmaster.pid ]] || return 1
  read -r pid 2>/dev/null <"$BILLING_PG_DATA/postmaster.pid" || return 1
  _infra_pid_alive "$pid" || return 1
  [[ $(cat "/proc/$pid/comm" 2>/dev/null) == postgres || $(cat "/proc/$pid/comm" 2>/dev/null) == postmaster ]] || return 1
  printf '%s\n' "$pid"
}

_infra_pg_ready() {
  "$BILLING_PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$BILLING_PG_PORT" -U postgres -d postgres -t 2 >/dev/null 2>&1
}

_infra_pg_wait_ready() { # <seconds>
  local deadline=$((SECONDS + $1))
  until _infra_pg_ready; do
    ((SECONDS < deadline)) || return 1
    sleep 0.2
  done
}

_infra_pg_prepare() {
  local owner=postgres
  ((EUID == 0)) || owner=$(id -un)
  (umask 022 && mkdir -p "$BILLING_DATA_DIR") || return 1
  if [[ ! -d $BILLING_PG_DIR ]]; then
    mkdir -p "$BILLING_PG_DIR" && chown "$owner:" "$BILLING_PG_DIR" && chmod 700 "$BILLING_PG_DIR" || return 1
  fi
  if ((EUID == 0)) && ! runuser -u postgres -- test -w "$BILLING_PG_DIR" 2>/dev/null; then
    _infra_err "user postgres cannot write $BILLING_PG_DIR (every parent folder must be traversable by postgres)"
    return 1
  fi
  local sock="$BILLING_PG_SOCKDIR/.s.PGSQL.$BILLING_PG_PORT"
  if ((${#sock} > 100)); then
    _infra_err "unix socket path too long for PostgreSQL (${#sock} > 100 chars): $sock"
    return 1
  fi
  if [[ ! -d $BILLING_PG_SOCKDIR ]]; then
    mkdir -p "$BILLING_PG_SOCKDIR" && chown "$owner:" "$BILLING_PG_SOCKDIR" && chmod 700 "$BILLING_PG_SOCKDIR" || return 1
  fi
  if [[ ! -f $BILLING_PG_DATA/PG_VERSION ]]; then
    # no cluster (or the remains of an interrupted initdb): create it
    rm -rf "$BILLING_PG_DATA"
    local out
    out=$(_infra_pg initdb -D "$BILLING_PG_DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 -N 2>&1) ||
      { _infra_err "initdb failed in $BILLING_PG_DATA:"; printf '%s\n' "$out" | tail -n 15 >&2; return 1; }
  fi
}

infra_pg_start() {
  _infra_need_profile || return 1
  local t0 pid opts tries out
  t0=$(_infra_now)
  [[ -x $BILLING_PG_BIN/pg_ctl ]] || { _infra_err "PostgreSQL 15 not found in $BILLING_PG_BIN: run infra_install"; return 1; }
  if pid=$(_infra_pg_pid); then
    _infra_pg_wait_ready 30 || { _infra_err "postgres PID $pid runs but 127.0.0.1:$BILLING_PG_PORT does not answer (log: $BILLING_PG_LOG)"; return 1; }
    _infra_log "postgres: already running on 127.0.0.1:$BILLING_PG_PORT (PID $pid)"
    return 0
  fi
  if _infra_port_open "$BILLING_PG_PORT"; then
    _infra_err "postgres: port 127.0.0.1:$BILLING_PG_PORT is taken by a process that is not our cluster ($BILLING_PG_DATA)"
    return 1
  fi
  _infra_pg_prepare || return 1
  # Crash leftovers: postmaster.pid and the socket lock file name the dead postmaster. PostgreSQL
  # checks them with kill(pid, 0), which also succeeds for a zombie or a reused PID, so a killed
  # server that its parent has not reaped yet would block the restart. Our check above
  # (_infra_pg_pid: alive, not a zombie, is a postgres) already said "not running".
  rm -f "$BILLING_PG_DATA/postmaster.pid"
  local lock lpid
  for lock in "$BILLING_PG_SOCKDIR"/.s.PGSQL.*.lock; do
    [[ -f $lock ]] || continue
    lpid=$(head -n 1 "$lock" 2>/dev/null) || lpid=
    if ! _infra_pid_alive "$lpid" || [[ $(cat "/proc/$lpid/comm" 2>/dev/null) != postgres ]]; then
      rm -f "$lock" "${lock%.lock}"
    fi
  done

  opts="-p $BILLING_PG_PORT -c listen_addresses=127.0.0.1 -k '$BILLING_PG_SOCKDIR' -c max_connections=300"
  # Sized for a ledger that grows with every spend: the default 128 MB of buffers stops holding the consumptions
  # indexes after a few million rows, and frequent checkpoints make every first change of a page a full-page WAL write.
  # Durability is untouched (fsync and synchronous_commit stay on in 'up'). BILLING_PG_SHARED_BUFFERS overrides.
  opts+=" -c shared_buffers=${BILLING_PG_SHARED_BUFFERS:-512MB} -c max_wal_size=4GB -c checkpoint_timeout=15min"
  if [[ $BILLING_PROFILE == test ]]; then   # tests only: the up profile keeps durable defaults
    opts+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  fi
  for tries in 1 2 3 4 5 6 7 8 9 10; do
    if out=$(_infra_pg pg_ctl -D "$BILLING_PG_DATA" -l "$BILLING_PG_LOG" -w -t 60 -o "$opts" start 2>&1); then
      break
    fi
    # after kill -9 the old backends may still hold the shared memory segment for a moment; and the port may be held
    # for a moment by a closing connection that had it as its ephemeral port (seen right after a load test)
    if ((tries < 10)) && tail -n 5 "$BILLING_PG_LOG" 2>/dev/null | grep -q -e 'pre-existing shared memory block' -e 'Address already in use'; then
      sleep 1
      continue
    fi
    _infra_err "postgres: pg_ctl start failed on 127.0.0.1:$BILLING_PG_PORT: $(printf '%s' "$out" | tail -n 3 | tr '\n' ' ')"
    _infra_err "last lines of $BILLING_PG_LOG:"
    tail -n 15 "$BILLING_PG_LOG" >&2 2>/dev/null
    return 1
  done
  _infra_pg_wait_ready 30 || { _infra_err "postgres: started but pg_isready does not answer on 127.0.0.1:$BILLING_PG_PORT (log: $BILLING_PG_LOG)"; return 1; }
  pid=$(_infra_pg_pid) || pid='?'
  _infra_log "postgres: started on 127.0.0.1:$BILLING_PG_PORT (PID $pid) in $(_infra_since "$t0")"
}

infra_pg_stop() {
  _infra_need_profile || return 1
  local t0 pid out
  t0=$(_infra_now)
  pid=$(_infra_pg_pid) || return 0
  if ! out=$(_infra_pg pg_ctl -D "$BILLING_PG_DATA" -m fast -w -t 60 stop 2>&1); then
    _infra_err "postgres: fast stop failed (${out//$'\n'/ }); trying immediate"
    _infra_pg pg_ctl -D "$BILLING_PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
  fi
  if ! _infra_wait_pid_gone "$pid" 10; then
    _infra_err "postgres: PID $pid did not exit (log: $BILLING_PG_LOG)"
    return 1
  fi
  _infra_log "postgres: stopped (PID $pid) in $(_infra_since "$t0")"
}

infra_create_db() {
  _infra_need_profile || return 1
  local name=${1:-} exists
  [[ $name =~ ^[A-Za-z_][A-Za-z0-9_-]{0,62}$ ]] || { _infra_err "infra_create_db: bad database name '$name'"; return 2; }
  local psql=("$BILLING_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BILLING_PG_PORT" -U postgres -d postgres)
  exists=$("${psql[@]}" -tAc "select 1 from pg_database where datname = '$name'" 2>&1) ||
    { _infra_err "infra_create_db: cannot query postgres on 127.0.0.1:$BILLING_PG_PORT: $exists"; return 1; }
  [[ $exists == 1 ]] && return 0
  local out
  if ! out=$("${psql[@]}" -c "create database \"$name\"" 2>&1); then
    # lost a race with a concurrent creator?
    exists=$("${psql[@]}" -tAc "select 1 from pg_database where datname = '$name'" 2>/dev/null) || true
    [[ $exists == 1 ]] && return 0
    _infra_err "infra_create_db: create database \"$name\" failed: $out"
    return 1
  fi
}

# ---------------------------------------------------------------------------------------------- rabbitmq
_infra_rabbit_run() { # [-t <seconds>] <tool> <args…>: a RabbitMQ CLI tool with the profile's private env
  local sbin tool to=()
  if [[ ${1:-} == -t ]]; then to=(timeout "$2"); shift 2; fi
  tool=$1; shift
  sbin=$(_infra_rabbit_sbin) || { _infra_err "rabbitmq-server not installed: run infra_install"; return 1; }
  mkdir -p "$BILLING_RABBIT_HOME" && chmod 700 "$BILLING_RABBIT_HOME" || return 1
  (
    cd "$BILLING_RABBIT_DIR" || exit 1
    export HOME="$BILLING_RABBIT_HOME"
    _infra_closefds "${to[@]}" "$sbin/$tool" "$@"
  )
}

infra_rabbit_ctl() {
  _infra_need_profile || return 1
  _infra_rabbit_run rabbitmqctl "$@"
}

_infra_rabbit_pid() { # print the recorded PID if it is alive and is our node (checked via its environment)
  local pid
  [[ -r $BILLING_RABBIT_PIDFILE ]] || return 1
  read -r pid 2>/dev/null <"$BILLING_RABBIT_PIDFILE" || return 1
  _infra_pid_alive "$pid" || return 1
  tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qxF "RABBITMQ_MNESIA_BASE=$RABBITMQ_MNESIA_BASE" || return 1
  printf '%s\n' "$pid"
}

_infra_rabbit_ready() {
  _infra_port_open "$BILLING_RABBIT_PORT" &&
    _infra_rabbit_run -t 30 rabbitmq-diagnostics -q check_port_connectivity >/dev/null 2>&1
}

_infra_rabbit_tail_logs() {
  local f
  for f in "$BILLING_RABBIT_CONSOLE_LOG" "$BILLING_RABBIT_LOG"; do
    [[ -s $f ]] || continue
    printf 'infra: --- last lines of %s\n' "$f" >&2
    tail -n 12 "$f" >&2
  done
}

_infra_epmd_kill() { # stop the profile's own epmd (refused by epmd while a node is registered)
  local n
  _infra_port_open "$BILLING_RABBIT_EPMD_PORT" || return 0
  ERL_EPMD_PORT=$BILLING_RABBIT_EPMD_PORT epmd -port "$BILLING_RABBIT_EPMD_PORT" -kill >/dev/null 2>&1 || true
  for n in 1 2 3 4 5 6 7 8 9 10; do
    _infra_port_open "$BILLING_RABBIT_EPMD_PORT" || return 0
    sleep 0.2
  done
  _infra_err "rabbitmq: epmd on 127.0.0.1:$BILLING_RABBIT_EPMD_PORT still runs (a node still registered?)"
  return 1
}

_infra_rabbit_orphan_pid() { # print the PID of this profile's node when it runs without its PID file (an earlier run's)
  local dir pid
  for dir in /proc/[0-9]*; do
    [[ $(cat "$dir/comm" 2>/dev/null) == beam.smp ]] || continue
    pid=${dir#/proc/}
    # ours only if its environment names this profile's data folder (set by infra_rabbit_start)
    tr '\0' '\n' 2>/dev/null <"$dir/environ" | grep -qxF "RABBITMQ_MNESIA_BASE=$RABBITMQ_MNESIA_BASE" && printf '%s\n' "$pid" && return 0
  done
  return 1
}

_infra_rabbit_kill_pid() { # <pid>: TERM, wait, KILL — only our recorded PID
  local pid=$1
  _infra_pid_alive "$pid" || return 0
  kill -TERM "$pid" 2>/dev/null || true
  _infra_wait_pid_gone "$pid" 20 && return 0
  _infra_err "rabbitmq: PID $pid ignored SIGTERM for 20 s; sending SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
  _infra_wait_pid_gone "$pid" 10
}

_infra_rabbit_write_config() {
  mkdir -p "$BILLING_RABBIT_DIR" "$BILLING_RABBIT_HOME" "$RABBITMQ_MNESIA_BASE" "$RABBITMQ_LOG_BASE" || return 1
  chmod 700 "$BILLING_RABBIT_HOME"
  printf '%s\n' "# generated by deploy/lib/infra.sh at every start" \
    "listeners.tcp.default = 127.0.0.1:$BILLING_RABBIT_PORT" \
    "loopback_users.guest = true" >"$RABBITMQ_CONFIG_FILE" || return 1
  [[ -f $RABBITMQ_CONF_ENV_FILE ]] || : >"$RABBITMQ_CONF_ENV_FILE"
  [[ -f $RABBITMQ_ENABLED_PLUGINS_FILE ]] || printf '[].\n' >"$RABBITMQ_ENABLED_PLUGINS_FILE"
}

infra_rabbit_start() {
  _infra_need_profile || return 1
  local t0 sbin pid deadline timeout=${BILLING_RABBIT_START_TIMEOUT:-90} started=0
  t0=$(_infra_now)
  sbin=$(_infra_rabbit_sbin) || { _infra_err "rabbitmq-server not installed: run infra_install"; return 1; }
  if pid=$(_infra_rabbit_pid) && _infra_port_open "$BILLING_RABBIT_PORT"; then
    _infra_log "rabbitmq: already running on 127.0.0.1:$BILLING_RABBIT_PORT (PID $pid)"
    return 0
  fi
  if [[ -z $pid ]]; then
    # not running (never started, stopped, or crashed): clean up and launch
    rm -f "$BILLING_RABBIT_PIDFILE" "$RABBITMQ_PID_FILE"
    if _infra_port_open "$BILLING_RABBIT_PORT" && pid=$(_infra_rabbit_orphan_pid); then
      # An earlier run of this profile left its node running without a PID file (seen once after a test run whose data
      # folder was wiped at the next start): it is ours — its environment names this profile's data — so stop it.
      _infra_log "rabbitmq: stopping this profile's node left running by an earlier run (PID $pid)"
      _infra_rabbit_kill_pid "$pid" || true
      _infra_epmd_kill || true
      pid=""
    fi
    if _infra_port_open "$BILLING_RABBIT_PORT"; then
      _infra_err "rabbitmq: port 127.0.0.1:$BILLING_RABBIT_PORT is taken by a process we did not start"
      return 1
    fi
    _infra_rabbit_write_config || { _infra_err "rabbitmq: cannot write config under $BILLING_RABBIT_DIR"; return 1; }
    printf '\n=== %s start (profile %s)\n' "$(date '+%F %T')" "$BILLING_PROFILE" >>"$BILLING_RABBIT_CONSOLE_LOG"
    # RABBITMQ_ALLOW_INPUT makes the server script exec erl (no wrapper shell), so the PID that
    # the launcher records is the beam.smp itself; -noinput keeps the Erlang shell off.
    (
      cd "$BILLING_RABBIT_DIR" || exit 1
      export HOME="$BILLING_RABBIT_HOME" RABBITMQ_ALLOW_INPUT=true RABBITMQ_SERVER_START_ARGS="-noinput +B i"
      _infra_close_extra_fds
      exec setsid nohup bash -c 'echo $$ >"$1.new" && mv -f "$1.new" "$1" && exec "$2"' \
        _ "$BILLING_RABBIT_PIDFILE" "$sbin/rabbitmq-server" </dev/null >>"$BILLING_RABBIT_CONSOLE_LOG" 2>&1 &
    )
    started=1
    deadline=$((SECONDS + 5))
    until [[ -s $BILLING_RABBIT_PIDFILE ]]; do
      ((SECONDS < deadline)) || { _infra_err "rabbitmq: launcher did not record a PID in $BILLING_RABBIT_PIDFILE"; return 1; }
      sleep 0.05
    done
    read -r pid <"$BILLING_RABBIT_PIDFILE"
  fi
  # wait for ready: AMQP port accepts connections AND check_port_connectivity passes (INFRA-NOTES.md)
  deadline=$((SECONDS + timeout))
  while :; do
    if ! _infra_pid_alive "$pid"; then
      _infra_err "rabbitmq: node exited during startup (PID $pid); logs: $BILLING_RABBIT_LOG, $BILLING_RABBIT_CONSOLE_LOG"
      _infra_rabbit_tail_logs
      rm -f "$BILLING_RABBIT_PIDFILE"
      _infra_epmd_kill || true
      return 1
    fi
    _infra_rabbit_ready && break
    if ((SECONDS >= deadline)); then
      _infra_err "rabbitmq: not ready after ${timeout} s on 127.0.0.1:$BILLING_RABBIT_PORT (PID $pid); log: $BILLING_RABBIT_LOG (console: $BILLING_RABBIT_CONSOLE_LOG)"
      _infra_rabbit_tail_logs
      if ((started)); then   # do not leave a half-started node of ours behind
        _infra_rabbit_kill_pid "$pid" || true
        rm -f "$BILLING_RABBIT_PIDFILE"
        _infra_epmd_kill || true
      fi
      return 1
    fi
    sleep 0.5
  done
  _infra_log "rabbitmq: started on 127.0.0.1:$BILLING_RABBIT_PORT (PID $pid, node $BILLING_RABBIT_NODE) in $(_infra_since "$t0")"
}

infra_rabbit_stop() {
  _infra_need_profile || return 1
  local t0 pid
  t0=$(_infra_now)
  if pid=$(_infra_rabbit_pid); then
    _infra_rabbit_run -t 60 rabbitmqctl shutdown >/dev/null 2>&1 || true
    if ! _infra_wait_pid_gone "$pid" 30; then
      _infra_rabbit_kill_pid "$pid" || { _infra_err "rabbitmq: PID $pid survives SIGKILL"; return 1; }
    fi
    rm -f "$BILLING_RABBIT_PIDFILE"
    _infra_epmd_kill || return 1
    _infra_log "rabbitmq: stopped (PID $pid) in $(_infra_since "$t0")"
  else
    rm -f "$BILLING_RABBIT_PIDFILE"
    _infra_epmd_kill || return 1   # e.g. after a kill -9 of the node its epmd is left
  fi
}

# ---------------------------------------------------------------------------------------------- all
infra_start() {
  infra_pg_start || return 1
  # Once more after a node that died while starting: seen when a run starts right after another stopped the same
  # profile (Erlang's registration with epmd refused: the previous epmd was still going away).
  infra_rabbit_start || { _infra_log "rabbitmq: starting once more in 5 s"; sleep 5; infra_rabbit_start; } || return 1
}

infra_stop() {
  local rc=0
  infra_rabbit_stop || rc=1
  infra_pg_stop || rc=1
  return "$rc"
}

infra_status() {
  _infra_need_profile || return 1
  local pid state
  if pid=$(_infra_pg_pid); then
    _infra_pg_ready && state=running || state=starting
  else
    pid=- state=stopped
  fi
  printf '%-9s %-8s 127.0.0.1:%-5s pid %-7s data %s  log %s\n' postgres "$state" "$BILLING_PG_PORT" "$pid" \
    "$BILLING_PG_DATA" "$BILLING_PG_LOG"
  if pid=$(_infra_rabbit_pid); then
    _infra_port_open "$BILLING_RABBIT_PORT" && state=running || state=starting
  else
    pid=- state=stopped
  fi
  printf '%-9s %-8s 127.0.0.1:%-5s pid %-7s data %s  log %s\n' rabbitmq "$state" "$BILLING_RABBIT_PORT" "$pid" \
    "$BILLING_RABBIT_DIR" "$BILLING_RABBIT_LOG"
}
