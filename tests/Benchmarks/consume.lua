-- wrk script for POST /api/usage/consume: many users, a fresh idempotency key per request, and a count of the
-- 200 answers (summed over wrk's threads in done()) so the benchmark can compare it with the spends stored.
-- args: <users> <user prefix> <key prefix> <bearer token> [<log prefix>]
-- With a log prefix (and LuaJIT's ffi, which Debian's wrk has), each thread also writes "<start, unix µs> <latency µs>"
-- per answer to <log prefix>.<thread>: the start travels in X-Correlation-Id, which the services send back. The
-- benchmark takes each run's p50/p99 from it (wrk's own are corrected, see done()) and tells the requests that a
-- slowdown of the host overlapped from the others (host-probe.c).
local threads = {}
local clock = nil
do
  local ok, ffi = pcall(require, "ffi")
  if ok then
    ffi.cdef [[ typedef struct { long tv_sec; long tv_nsec; } bench_timespec; int clock_gettime(int, bench_timespec *); ]]
    local ts = ffi.new("bench_timespec")
    clock = function() -- CLOCK_REALTIME in µs, as the host probe's clock
      ffi.C.clock_gettime(0, ts)
      return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
    end
  end
end

function setup(thread)
  thread:set("id", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  users = tonumber(args[1])
  user_prefix = args[2]
  key_prefix = args[3]
  headers = { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. args[4] }
  sent, ok, other, unlogged = 0, 0, 0, 0
  log_prefix = clock and args[5] or nil
  log = {}
  math.randomseed(os.time() * 1000 + id * 7919)
end

function request()
  sent = sent + 1
  local body = string.format(
    '{"userId":"%s%d","meter":"ai.generation","quantity":1,"idempotencyKey":"%s-%d-%d"}',
    user_prefix, math.random(1, users), key_prefix, id, sent)
  if log_prefix then headers["X-Correlation-Id"] = string.format("%.0f", clock()) end
  return wrk.format("POST", "/api/usage/consume", headers, body)
end

function response(status, headers, body)
  if status == 200 then ok = ok + 1 else other = other + 1 end
  if log_prefix then
    local started = tonumber(headers["X-Correlation-Id"])
    if started then log[#log + 1] = string.format("%.0f %.0f", started, clock() - started) else unlogged = unlogged + 1 end
  end
end

function done(summary, latency, requests)
  local total_ok, total_other, total_unlogged = 0, 0, nil
  for _, t in ipairs(threads) do
    total_ok = total_ok + t:get("ok")
    total_other = total_other + t:get("other")
    local prefix = t:get("log_prefix")
    if prefix then
      total_unlogged = (total_unlogged or 0) + t:get("unlogged")
      local f = io.open(prefix .. "." .. t:get("id"), "w")
      f:write(table.concat(t:get("log"), "\n"), "\n")
      f:close()
    end
  end
  local e = summary.errors
  -- wrk's latency statistics come with its correction for coordinated omission already applied (wrk.c calls
  -- stats_correct before done()): for each answer slower than twice the mean time between a connection's requests, it
  -- adds made-up latencies at that interval below it. The per-request log has the requests alone.
  io.write(string.format("RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d ok=%d other=%d socket_errors=%d unlogged=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), total_ok, total_other,
    e.connect + e.read + e.write + e.timeout, total_unlogged or -1)) -- -1: no per-request log (no LuaJIT clock)
end
