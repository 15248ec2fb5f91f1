-- Shared by every scenario (bench/load.py puts it in front of the scenario's script).
-- Each wrk thread counts its non-2xx answers by status in response(); done() adds up the threads' counts
-- and prints one JSON line (prefixed BENCH_JSON) with the totals, socket errors and latency in microseconds.

local threads = {}
local next_id = 0

function setup(thread)
  next_id = next_id + 1
  thread:set("thread_id", next_id)
  table.insert(threads, thread)
end

statuses = {}

function response(status, headers, body)
  if status < 200 or status > 299 then
    local key = tostring(status)
    statuses[key] = (statuses[key] or 0) + 1
  end
end

-- Per-thread random seed (each thread has its own Lua state).
function seed()
  math.randomseed(os.time() * 1000 + (thread_id or 0) * 7919 + math.floor(os.clock() * 1000000))
end

function done(summary, latency, requests)
  local by_status = {}
  for _, t in ipairs(threads) do
    for key, n in pairs(t:get("statuses") or {}) do
      by_status[key] = (by_status[key] or 0) + n
    end
  end
  local parts = {}
  for key, n in pairs(by_status) do
    parts[#parts + 1] = string.format('"%s":%d', key, n)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"non2xx":{%s},' ..
    '"socket":{"connect":%d,"read":%d,"write":%d,"timeout":%d},' ..
    '"latency_us":{"min":%d,"max":%d,"mean":%.1f,"stdev":%.1f,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}\n',
    summary.requests, summary.duration, summary.bytes, table.concat(parts, ","),
    e.connect, e.read, e.write, e.timeout,
    latency.min, latency.max, latency.mean, latency.stdev,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9)))
end
