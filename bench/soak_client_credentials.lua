-- wrk script for bench/soak: client-credentials token requests at a modest, steady rate.
-- Each connection waits BENCH_DELAY_MS between requests (wrk's delay() hook), so
-- connections x 1000 / BENCH_DELAY_MS is the most it sends per second.
-- BENCH_BASIC = base64("client_id:client_secret"), set by bench/soak.
local basic = os.getenv("BENCH_BASIC")
local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "")
if basic == nil or basic == "" or delay_ms == nil then
  error("BENCH_BASIC and BENCH_DELAY_MS must be set (bench/soak sets them)")
end

wrk.method = "POST"
wrk.path = "/token"
wrk.body = "grant_type=client_credentials&scope=models%3Aread"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. basic

function delay()
  return delay_ms
end
