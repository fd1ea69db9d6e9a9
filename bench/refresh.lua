-- wrk script for bench/database: refresh-token rotation (RFC 6749 §6), every connection keeping
-- chains alive. Each thread holds a queue of current refresh tokens (its share of the lines of
-- BENCH_TOKENS_FILE); request() takes the oldest, response() parses the new refresh_token of
-- the answer and puts it at the back. A token is sent once and never again: reuse would revoke
-- its family. With at least as many tokens per thread as connections per thread, the queue
-- never runs dry; if it does (a chain broken by a failure), a GET /healthz is sent instead and
-- counted as "empty".
--
-- Environment: BENCH_BASIC = base64("client_id:client_secret"), BENCH_TOKENS_FILE,
-- BENCH_THREADS (= wrk -t). done() prints one line:
--   RESULT ok=… fail=… empty=… duration_s=… rate=… p50_ms=… p99_ms=…
-- then the first failed answers (status and body), if any.
local basic = os.getenv("BENCH_BASIC")
local file = os.getenv("BENCH_TOKENS_FILE")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "")
if basic == nil or file == nil or nthreads == nil then
  error("BENCH_BASIC, BENCH_TOKENS_FILE and BENCH_THREADS must be set (bench/database sets them)")
end

wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. basic

local threads = {}
local created = 0
function setup(thread)
  thread:set("id", created)
  created = created + 1
  table.insert(threads, thread)
end

local queue, head, tail = {}, 1, 0
function init(args)
  local i = 0
  for line in io.lines(file) do
    if line ~= "" then
      if i % nthreads == id then
        tail = tail + 1
        queue[tail] = line
      end
      i = i + 1
    end
  end
  ok, fail, empty, failures = 0, 0, 0, ""
end

-- wrk calls request() once in thread 0 before the run starts, only to check the request's
-- format (script_verify_request: how many requests it holds); that call must not spend a
-- token, or the token would be lost unsent.
local verified = false
function request()
  if not verified then
    verified = true
    if id == 0 then
      return wrk.format("GET", "/healthz")
    end
  end
  if head > tail then
    empty = empty + 1
    return wrk.format("GET", "/healthz")
  end
  local token = queue[head]
  queue[head] = nil
  head = head + 1
  return wrk.format("POST", "/token", nil, "grant_type=refresh_token&refresh_token=" .. token)
end

function response(status, headers, body)
  if status == 200 then
    local token = body:match('"refresh_token"%s*:%s*"([^"]+)"')
    if token then
      tail = tail + 1
      queue[tail] = token
      ok = ok + 1
      return
    end
    if body:find('"status"', 1, true) then
      return -- the /healthz filler
    end
  end
  fail = fail + 1
  if #failures < 1500 then
    failures = failures .. "  " .. status .. " " .. body:sub(1, 200):gsub("\n", " ") .. "\n"
  end
end

function done(summary, latency, requests)
  local t_ok, t_fail, t_empty, t_failures = 0, 0, 0, ""
  for _, t in ipairs(threads) do
    t_ok = t_ok + t:get("ok")
    t_fail = t_fail + t:get("fail")
    t_empty = t_empty + t:get("empty")
    t_failures = t_failures .. t:get("failures")
  end
  local secs = summary.duration / 1e6
  io.write(string.format("RESULT ok=%d fail=%d empty=%d duration_s=%.3f rate=%.1f p50_ms=%.2f p99_ms=%.2f\n",
    t_ok, t_fail, t_empty, secs, t_ok / secs, latency:percentile(50) / 1000, latency:percentile(99) / 1000))
  if t_failures ~= "" then
    io.write("FAILURES (first ones per thread):\n" .. t_failures)
  end
end
