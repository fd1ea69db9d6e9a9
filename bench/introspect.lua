-- wrk script: token introspection (RFC 7662) of one access token, with HTTP Basic client auth.
-- The path is the URL's (Portcullis /introspect, oidc-provider /token/introspection).
-- BENCH_BASIC = base64("client_id:client_secret"), BENCH_TOKEN = the token (URL-safe
-- characters only: a JWT or an opaque base64url token); set by bench/compare.
local basic = os.getenv("BENCH_BASIC")
local token = os.getenv("BENCH_TOKEN")
if basic == nil or basic == "" or token == nil or token == "" then
  error("BENCH_BASIC and BENCH_TOKEN must be set (bench/compare sets them)")
end

wrk.method = "POST"
wrk.body = "token=" .. token
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic " .. basic
-- No response() callback, as in client_credentials.lua: wrk counts non-2xx answers itself, and
-- bench/compare checks before and after each run that the token is still active.
