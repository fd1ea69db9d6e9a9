-- wrk script: client-credentials token requests (RFC 6749 §4.4) with HTTP Basic client auth.
-- BENCH_BASIC = base64("client_id:client_secret"), computed by bench/run.
local basic = os.getenv("BENCH_BASIC")
if basic == nil or basic == "" then
  error("BENCH_BASIC is not set (bench/run sets it)")
end

wrk.method = "POST"
wrk.path = "/token"
wrk.body = "grant_type=client_credentials&scope=models%3Aread"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. basic

-- Each wrk thread has its own Lua state: counters live per thread and are summed in done().
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  non200 = 0
  last_status = 0
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
    last_status = status
  end
end

function done(summary, latency, requests)
  local total, status = 0, 0
  for _, thread in ipairs(threads) do
    total = total + thread:get("non200")
    local s = thread:get("last_status")
    if s ~= 0 then status = s end
  end
  -- bench/run parses this line.
  io.write(string.format("non-200 responses: %d (last status %d)\n", total, status))
end
