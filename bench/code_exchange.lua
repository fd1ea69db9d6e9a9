-- wrk script for bench/database: authorization-code exchange (RFC 6749 §4.1.3, PKCE), each code
-- of BENCH_CODES_FILE sent exactly once. Thread k takes lines k, k + T, k + 2T… When a thread
-- has sent all its codes, its connections send GET /healthz (not counted) until the last code
-- is answered, then the thread stops; the rate is measured with a monotonic clock from the
-- first code sent to the last code answered, over every thread, so it holds whether the codes
-- or the duration ran out first.
--
-- Environment: BENCH_BASIC, BENCH_CODES_FILE, BENCH_THREADS (= wrk -t), BENCH_REDIRECT_URI,
-- BENCH_VERIFIER. done() prints
--   RESULT ok=… fail=… filler=… codes=… window_s=… rate=… p50_ms=… p99_ms=… exhausted=0|1
-- then the first failed answers, if any.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
  int clock_gettime(int clock_id, bench_timespec *tp);
]]
local ts = ffi.new("bench_timespec")
local function now()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC: the same clock in every thread
  return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) * 1e-9
end

local function urlencode(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", string.byte(c)) end))
end

local basic = os.getenv("BENCH_BASIC")
local file = os.getenv("BENCH_CODES_FILE")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "")
local redirect_uri = os.getenv("BENCH_REDIRECT_URI")
local verifier = os.getenv("BENCH_VERIFIER")
if not (basic and file and nthreads and redirect_uri and verifier) then
  error("BENCH_BASIC, BENCH_CODES_FILE, BENCH_THREADS, BENCH_REDIRECT_URI and BENCH_VERIFIER must be set")
end
local prefix = "grant_type=authorization_code&redirect_uri=" .. urlencode(redirect_uri) ..
  "&code_verifier=" .. urlencode(verifier) .. "&code="

wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. basic

local threads = {}
local created = 0
function setup(thread)
  thread:set("id", created)
  created = created + 1
  table.insert(threads, thread)
end

local codes, nxt = {}, 1
function init(args)
  local i = 0
  for line in io.lines(file) do
    if line ~= "" then
      if i % nthreads == id then
        codes[#codes + 1] = line
      end
      i = i + 1
    end
  end
  ncodes = #codes
  ok, fail, filler, failures = 0, 0, 0, ""
  t_first, t_last = 0, 0
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
  if nxt <= ncodes then
    local code = codes[nxt]
    nxt = nxt + 1
    if t_first == 0 then t_first = now() end
    return wrk.format("POST", "/token", nil, prefix .. urlencode(code))
  end
  filler = filler + 1
  return wrk.format("GET", "/healthz")
end

function response(status, headers, body)
  if status == 200 and body:find('"access_token"', 1, true) then
    ok = ok + 1
    t_last = now()
  elseif status == 200 and body:find('"status"', 1, true) then
    return -- the /healthz filler
  else
    fail = fail + 1
    if #failures < 1500 then
      failures = failures .. "  " .. status .. " " .. body:sub(1, 200):gsub("\n", " ") .. "\n"
    end
  end
  if ok + fail >= ncodes then
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local t_ok, t_fail, t_filler, t_codes, t_failures = 0, 0, 0, 0, ""
  local first, last, exhausted = math.huge, 0, 1
  for _, t in ipairs(threads) do
    t_ok = t_ok + t:get("ok")
    t_fail = t_fail + t:get("fail")
    t_filler = t_filler + t:get("filler")
    t_codes = t_codes + t:get("ncodes")
    t_failures = t_failures .. t:get("failures")
    local f, l = t:get("t_first"), t:get("t_last")
    if f > 0 and f < first then first = f end
    if l > last then last = l end
    if t:get("ok") + t:get("fail") < t:get("ncodes") then exhausted = 0 end
  end
  local window = (last > first) and (last - first) or (summary.duration / 1e6)
  io.write(string.format(
    "RESULT ok=%d fail=%d filler=%d codes=%d window_s=%.3f rate=%.1f p50_ms=%.2f p99_ms=%.2f exhausted=%d\n",
    t_ok, t_fail, t_filler, t_codes, window, t_ok / window,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, exhausted))
  if t_failures ~= "" then
    io.write("FAILURES (first ones per thread):\n" .. t_failures)
  end
end
