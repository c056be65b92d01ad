-- wrk script: optional request headers from the environment, and a JSON summary line at the end
-- (requests/s, latency percentiles in microseconds, errors) for bench/run.py to parse.
local auth = os.getenv("BENCH_AUTHORIZATION")
local origin = os.getenv("BENCH_ORIGIN")
-- "close": a new connection (and, over https, a full handshake) for every request.
local connection = os.getenv("BENCH_CONNECTION")
-- A pause before each request on a connection (ms): a steady, moderate rate instead of as fast as
-- the server answers (the soak).
local pause = tonumber(os.getenv("BENCH_DELAY_MS") or "")
-- A JSON body to POST with every request (the LLM scenario's chat request).
local body_file = os.getenv("BENCH_BODY_FILE")

if pause then
  function delay() return pause end
end

function init(args)
  if auth and auth ~= "" then wrk.headers["Authorization"] = auth end
  if origin and origin ~= "" then wrk.headers["Origin"] = origin end
  if connection and connection ~= "" then wrk.headers["Connection"] = connection end
  if body_file and body_file ~= "" then
    local file = assert(io.open(body_file, "rb"))
    wrk.method = "POST"
    wrk.body = file:read("*a")
    file:close()
    wrk.headers["Content-Type"] = "application/json"
  end
end

function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    'WRK_JSON {"requests":%d,"seconds":%.3f,"rps":%.1f,"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d,"errors":%d,"non_2xx":%d}\n',
    summary.requests, seconds, summary.requests / seconds,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max,
    errors, summary.errors.status))
end
