-- wrk script for bench/dpop: client-credentials token requests (as bench/client_credentials.lua),
-- with a DPoP proof (RFC 9449) in each request or without, so both runs of a pair cost wrk the
-- same: request() is called for every request in both modes.
--
-- Environment: BENCH_BASIC = base64("client_id:client_secret"); BENCH_DPOP_MODE = plain | dpop;
-- with dpop, BENCH_PROOFS = a path prefix: thread k (0, 1, …, in wrk's order) reads the proofs
-- of PREFIX-k.txt (one a line, made by bench/dpop_proofs.py), and sends each once, in order.
-- The threads' files hold different proofs, so no proof is sent twice. A thread out of proofs
-- sends GET /healthz instead (not a token: bench/dpop counts these as errors, the run then
-- does not count). done() prints one line:
--   DPOP_RESULT mode=… sent=… empty=…   (proofs sent; requests that found none)
--
-- No response() callback, as in bench/client_credentials.lua (it costs wrk a Lua table per
-- response): wrk counts non-2xx answers itself, and a replayed or stale proof answers 400.
local basic = os.getenv("BENCH_BASIC")
local mode = os.getenv("BENCH_DPOP_MODE")
local prefix = os.getenv("BENCH_PROOFS")
if basic == nil or basic == "" then
  error("BENCH_BASIC is not set (bench/dpop sets it)")
end
if mode ~= "plain" and mode ~= "dpop" then
  error("BENCH_DPOP_MODE must be plain or dpop (bench/dpop sets it)")
end
if mode == "dpop" and (prefix == nil or prefix == "") then
  error("BENCH_PROOFS is not set (bench/dpop sets it)")
end

local body = "grant_type=client_credentials&scope=models%3Aread"
wrk.method = "POST"
wrk.path = "/token"
wrk.body = body
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. basic

local threads = {}
local created = 0
function setup(thread)
  thread:set("id", created)
  created = created + 1
  table.insert(threads, thread)
end

-- The request text around the proof: built once, with a marker where the proof goes.
local plain, before, after, filler
local data, pos = "", 1
function init(args)
  plain = wrk.format("POST", "/token")
  local headers = {}
  for name, value in pairs(wrk.headers) do
    headers[name] = value
  end
  headers["DPoP"] = "@PROOF@"
  local template = wrk.format("POST", "/token", headers, body)
  local at = template:find("@PROOF@", 1, true)
  before, after = template:sub(1, at - 1), template:sub(at + #"@PROOF@")
  filler = wrk.format("GET", "/healthz", { Host = wrk.headers["Host"] }, nil)
  sent, empty = 0, 0
  if mode == "dpop" then
    -- The whole file as one string, cut at the next newline per request: loading is one read
    -- (thread 0 already sends while thread 1 loads), not a Lua string per line up front.
    local file = assert(io.open(prefix .. "-" .. id .. ".txt", "rb"))
    data = file:read("*a")
    file:close()
  end
end

-- wrk calls request() once in thread 0 before the run starts, only to check the request's
-- format (script_verify_request: how many requests it holds); that call must not spend a
-- proof. (A proof spent there would be lost unsent, not sent twice; this keeps the count exact.)
local verified = false
function request()
  if not verified then
    verified = true
    if id == 0 then
      return plain
    end
  end
  if mode == "plain" then
    return plain
  end
  local stop = data:find("\n", pos, true)
  if stop == nil then
    empty = empty + 1
    return filler
  end
  local proof = data:sub(pos, stop - 1)
  pos = stop + 1
  sent = sent + 1
  return before .. proof .. after
end

function done(summary, latency, requests)
  local t_sent, t_empty = 0, 0
  for _, t in ipairs(threads) do
    t_sent = t_sent + t:get("sent")
    t_empty = t_empty + t:get("empty")
  end
  io.write(string.format("DPOP_RESULT mode=%s sent=%d empty=%d\n", mode, t_sent, t_empty))
end
