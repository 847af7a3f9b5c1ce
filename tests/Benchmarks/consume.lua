-- wrk script for POST /api/usage/consume: many users, a fresh idempotency key per request, and a count of the
-- 200 answers (summed over wrk's threads in done()) so the benchmark can compare it with the spends stored.
-- args: <users> <user prefix> <key prefix> <bearer token>
local threads = {}

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  users = tonumber(args[1])
  user_prefix = args[2]
  key_prefix = args[3]
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. args[4] }
  sent, ok, other = 0, 0, 0
  math.randomseed(os.time() * 1000 + id * 7919)
end

function request()
  sent = sent + 1
  local body = string.format(
    '{"userId":"%s%d","meter":"ai.generation","quantity":1,"idempotencyKey":"%s-%d-%d"}',
    user_prefix, math.random(1, users), key_prefix, id, sent)
  return wrk.format("POST", "/api/usage/consume", headers, body)
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1 end
end

function done(summary, latency, requests)
  local total_ok, total_other = 0, 0
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_other = total_other + t:get("other")
  end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d ok=%d other=%d socket_errors=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), total_ok, total_other,
    e.connect + e.read + e.write + e.timeout))
end
