#!/usr/bin/env bash
# deploy/billing test: a fresh private PostgreSQL and RabbitMQ (the 'test' profile: its own ports and data, so a
# running 'up' is untouched), one Release build, every test project, then the whole stack for the end-to-end
# tests. Ends with one line 'N passed, N failed, N skipped' summed over all projects; exits non-zero on any
# failure, on a project that reported nothing, or when no test ran.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
source "$REPO/deploy/lib/infra.sh"
source "$REPO/deploy/lib/stack.sh"
export DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1

FILTER=""
while (($#)); do
  case $1 in
    --filter) FILTER=$2; shift 2 ;;
    *) echo "unknown option $1 (use --filter EXPR)" >&2; exit 2 ;;
  esac
done

started=$SECONDS
infra_install
infra_profile test
stack_profile test
# Each run starts from nothing: stop what a crashed run left (by its recorded PIDs) and wipe its data.
stack_stop 2>/dev/null || true
infra_stop >/dev/null 2>&1 || true
rm -rf "$BILLING_DATA_DIR"
mkdir -p "$BILLING_DATA_DIR"
infra_profile test
stack_profile test

cleanup() {
  stack_stop 2>/dev/null || true
  infra_stop >/dev/null 2>&1 || true
}
trap cleanup EXIT

infra_start
stack_build

RUN_ID="r$(date +%s)$((RANDOM % 1000))"
export BILLING_TEST_RUN_ID=$RUN_ID
export BILLING_TEST_PG="Host=127.0.0.1;Port=$BILLING_PG_PORT;Username=postgres;Timeout=5"
export BILLING_TEST_RABBIT_HOST=127.0.0.1 BILLING_TEST_RABBIT_PORT=$BILLING_RABBIT_PORT
export BILLING_TEST_SIM_URL="http://127.0.0.1:$SIM_PORT"
export BILLING_REPO=$REPO
for s in "${STACK_SERVICES[@]}"; do
  export "BILLING_TEST_${s^^}_URL=http://127.0.0.1:${SERVICE_PORT[$s]}"
done

passed=0 failed=0 skipped=0
LOGS="$BILLING_DATA_DIR/test-logs"
mkdir -p "$LOGS"

run_project() { # <project dir> [filter] [label]
  local project=$1 filter=${2:-$FILTER} label=${3:-} name log line
  name=$(basename "$project")
  log="$LOGS/$name${label:+-$label}.log"
  echo "── $name${label:+ ($label)}"
  local -a args=(test "$REPO/$project" -c Release --no-build --nologo --blame-hang-timeout 10m)
  [[ -n $filter ]] && args+=(--filter "$filter")
  set +e
  dotnet "${args[@]}" 2>&1 | tee "$log" | grep -E '^\s*(Failed|Skipped) |Passed!|Failed!|error' | grep -v '^\s*$'
  set -e
  line=$(grep -E '(Passed|Failed)!\s+-\s+Failed:' "$log" | tail -n 1 || true)
  if [[ -z $line ]]; then
    if [[ -n $filter ]] && ! grep -q 'error' "$log"; then
      echo "   (no test matched the filter)"
      return 0
    fi
    echo "   $name reported no result (see $log)"
    failed=$((failed + 1))
    return 0
  fi
  local f p s
  f=$(sed -E 's/.*Failed:\s*([0-9]+).*/\1/' <<< "$line")
  p=$(sed -E 's/.*Passed:\s*([0-9]+).*/\1/' <<< "$line")
  s=$(sed -E 's/.*Skipped:\s*([0-9]+).*/\1/' <<< "$line")
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  if ((f > 0)); then
    # CI keeps only this output: show why each test failed (its message and the top of its stack).
    echo "   ── why (from $log):"
    awk '/^ *Failed [^ ]+ \[/ { n = 14 } n > 0 { print "   " $0; n-- }' "$log" | head -n 120
  fi
}

# Projects that bring their own hosts (or need only PostgreSQL and RabbitMQ).
for project in "$REPO"/tests/*.Tests; do
  # These two drive the running stack: they run below, once it is up.
  [[ $(basename "$project") == Billing.EndToEnd.Tests || $(basename "$project") == Billing.Client.Tests ]] && continue
  run_project "tests/$(basename "$project")"
done

# Playwright (playwright-core from npm) drives Debian's Chromium headless; no browser is ever downloaded.
browser_install() {
  command -v chromium >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }
  command -v node >/dev/null || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nodejs npm; }
  (cd "$REPO/tests/browser" && npm ci --no-audit --no-fund)
}

run_browser_tests() {
  local log="$LOGS/browser.log" p f s
  echo "── tests/browser (Chromium headless; screenshots in $BILLING_DATA_DIR/screenshots)"
  if ! browser_install > "$LOGS/browser-install.log" 2>&1; then
    echo "   Chromium or playwright-core could not be installed (see $LOGS/browser-install.log)"
    failed=$((failed + 1))
    return 0
  fi
  set +e
  (cd "$REPO/tests/browser" && BILLING_SCREENSHOTS_DIR="$BILLING_DATA_DIR/screenshots" node --test --test-concurrency=1 --test-reporter=tap) > "$log" 2>&1
  set -e
  grep -E '^not ok|^# (pass|fail) ' "$log" | sed 's/^/   /'
  p=$(sed -nE 's/^# pass ([0-9]+)$/\1/p' "$log" | tail -n1)
  f=$(sed -nE 's/^# fail ([0-9]+)$/\1/p' "$log" | tail -n1)
  s=$(sed -nE 's/^# skipped ([0-9]+)$/\1/p' "$log" | tail -n1)
  if [[ -z $p ]]; then
    echo "   tests/browser reported no result (see $log)"
    failed=$((failed + 1))
    return 0
  fi
  passed=$((passed + p)); failed=$((failed + ${f:-0})); skipped=$((skipped + ${s:-0}))
}

# The end-to-end tests drive the real processes: simulator, four services, gateway.
export BILLING_DB_SUFFIX="_$RUN_ID" BILLING_QUEUE_PREFIX="$RUN_ID-"
stack_profile test
echo "── starting the stack (logs in $STACK_DIR/logs)"
stack_start
if stack_wait_ready 150 && stack_catalog push "$BILLING_CATALOG" > "$STACK_DIR/logs/catalog-push.log" 2>&1; then
  if [[ -n $FILTER ]]; then
    run_project tests/Billing.EndToEnd.Tests
    run_project tests/Billing.Client.Tests
  else
    run_project tests/Billing.EndToEnd.Tests "TestCategory!=seed"
    run_project tests/Billing.Client.Tests "TestCategory!=seed"
    # Each seed's own story runs against its own catalog: the services restart with it (the simulator, gateway,
    # PostgreSQL and RabbitMQ keep running), and the catalog is pushed into the simulator.
    for catalog in "$REPO"/deploy/catalogs/*.json; do
      seed=$(basename "$catalog" .json)
      [[ $seed == default ]] && continue
      export BILLING_CATALOG=$catalog
      stack_restart_services
      if stack_wait_ready 90 && stack_catalog push "$catalog" >> "$STACK_DIR/logs/catalog-push.log" 2>&1; then
        run_project tests/Billing.EndToEnd.Tests "TestCategory=seed-$seed" "$seed"
        if [[ $seed == learning-community ]]; then
          run_project tests/Billing.Client.Tests "TestCategory=seed-$seed" "$seed"
          run_browser_tests
        fi
      else
        echo "   the stack did not come back with the $seed catalog"
        failed=$((failed + 1))
      fi
    done
  fi
else
  echo "   the stack did not become ready; end-to-end tests not run"
  failed=$((failed + 1))
fi

cleanup
trap - EXIT
echo "test run took $((SECONDS - started)) s"
echo "$passed passed, $failed failed, $skipped skipped"
if ((failed > 0 || passed == 0)); then
  exit 1
fi
