-- wrk script: POSTs pre-signed Stripe events (one "signature<TAB>body" per line of EVENTS_FILE) to /webhooks/stripe.
-- Thread k of T sends lines k, k+T, k+2T …, so no two requests carry the same event id until a thread runs out of
-- lines and wraps (reported: a wrapped event is a duplicate, which Billing acknowledges without storing it again).
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("EVENTS_FILE")
  sigs, bodies = {}, {}
  local n, i = 0, 0
  local mine = tid
  local step = tonumber(os.getenv("WRK_THREADS") or "1")
  for line in io.lines(path) do
    if i % step == mine then
      local tab = line:find("\t", 1, true)
      n = n + 1
      sigs[n] = line:sub(1, tab - 1)
      bodies[n] = line:sub(tab + 1)
    end
    i = i + 1
  end
  count, next_i, wraps = n, 0, 0
  headers = { ["Content-Type"] = "application/json", ["Stripe-Signature"] = "" }
end

function request()
  next_i = next_i + 1
  if next_i > count then
    next_i = 1
    wraps = wraps + 1
  end
  headers["Stripe-Signature"] = sigs[next_i]
  return wrk.format("POST", "/webhooks/stripe", headers, bodies[next_i])
end

function done(summary, latency, requests)
  local wrapped = 0
  for _, t in ipairs(threads) do wrapped = wrapped + (t:get("wraps") or 0) end
  local seconds = summary.duration / 1e6
  local e = summary.errors
  local failed = e.status + e.connect + e.read + e.write + e.timeout
  io.write(string.format("RESULT requests=%d failed=%d non2xx=%d socket_errors=%d seconds=%.2f accepted_per_s=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f wrapped=%d\n",
    summary.requests, failed, e.status, e.connect + e.read + e.write + e.timeout, seconds, (summary.requests - failed) / seconds,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000, wrapped))
end
