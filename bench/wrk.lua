-- wrk script for `make bench` (driven by tests/src/bin/bench/main.rs). Environment:
--   BENCH_BODY      file holding the request body (a chat completion request)
--   BENCH_STREAM    "1": ask the bench upstream for an SSE stream (header x-bench-stream)
--   BENCH_DELAY_MS  > 0: each connection waits this long after a response before its next request,
--                   so a few connections give a steady, modest request rate (the paced runs)
--   BENCH_HEADERS   more headers, one `name: value` a line (a peer gateway's routing and key, `make bench-peers`)
-- done() prints one `BENCH_RESULT key=value ...` line (latencies in microseconds) for the driver.

local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-client-key"
wrk.headers["x-consumer-id"] = "bench"
-- Arms without ai-proxy are routed by this header (the route uses cluster_header); ai-proxy replaces it.
wrk.headers["x-ai-cluster"] = "mock_openai"
if os.getenv("BENCH_STREAM") == "1" then
  wrk.headers["x-bench-stream"] = "1"
end
-- An extra header replaces the bench's own of the same name (a peer's own API key as Authorization).
for name, value in (os.getenv("BENCH_HEADERS") or ""):gmatch("([^:\n]+):%s*([^\n]*)") do
  for k in pairs(wrk.headers) do
    if k:lower() == name:lower() then
      wrk.headers[k] = nil
    end
  end
  wrk.headers[name] = value
end

local delay_ms = tonumber(os.getenv("BENCH_DELAY_MS") or "0") or 0
if delay_ms > 0 then
  function delay()
    return delay_ms
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH_RESULT requests=%d duration_us=%d bytes=%d connect=%d read=%d write=%d status=%d timeout=%d "
      .. "p50=%d p90=%d p99=%d max=%d mean=%.1f\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
