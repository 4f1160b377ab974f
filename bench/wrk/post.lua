-- wrk script for bench/run.sh: POSTs one chat request body again and again and
-- prints a machine-readable result line.
--   BENCH_BODY     path of the request body (JSON)
--   BENCH_HEADERS  extra headers, "name: value" pairs separated by '|'
-- wrk counts non-2xx/3xx replies in summary.errors.status; no response()
-- callback is defined, so wrk does not have to keep every body for Lua.
local path = os.getenv("BENCH_BODY")
local f = assert(io.open(path, "rb"), "cannot open " .. tostring(path))
wrk.body = f:read("*a")
f:close()
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench"
for h in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^|]+") do
   local name, value = string.match(h, "^%s*([^:]+):%s*(.-)%s*$")
   if name then wrk.headers[name] = value end
end

function done(summary, latency, requests)
   local e = summary.errors
   io.write(string.format(
      "BENCHRESULT requests=%d duration_us=%d bytes=%d err_connect=%d err_read=%d " ..
      "err_write=%d err_status=%d err_timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
      summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write,
      e.status, e.timeout, latency:percentile(50), latency:percentile(90),
      latency:percentile(99), latency.max))
end
