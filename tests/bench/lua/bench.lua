-- wrk script of the benchmarks (tests/bench). One script, driven by environment variables:
--   BENCH_MODE    health | submit | repeat | invalid | status
--   BENCH_EXPECT  the status code counted as a success (200; 202 for submit; 422 for invalid)
--   BENCH_TOKEN   user access token (sent as Authorization: Bearer …)
--   BENCH_TOKENS  submit only: several users' tokens, space-separated, used in turn (the
--                 per-user limits count each user in its own Durable Object)
--   BENCH_TAG     task id prefix for submit (ids are TAG-<thread>-<counter>, all distinct)
--   BENCH_PROMPT  prompt of submit / repeat bodies (carries the fakes' directive)
--   BENCH_IDS     file of existing task ids, one a line (status, repeat)
-- done() prints one line `BENCH_JSON {...}` with counts and latency percentiles (µs).

local threads = {}
local nthreads = 0

function setup(thread)
  nthreads = nthreads + 1
  thread:set("tid", nthreads)
  table.insert(threads, thread)
end

local mode, expect, tag, prompt, ids, n_ids, pos, counter, tokens

function init(args)
  mode = os.getenv("BENCH_MODE") or "health"
  expect = tonumber(os.getenv("BENCH_EXPECT") or "200")
  tag = os.getenv("BENCH_TAG") or "bench"
  prompt = os.getenv("BENCH_PROMPT") or "a bench cat"
  ok = 0
  bad = 0
  codes = {}
  counter = 0
  local token = os.getenv("BENCH_TOKEN")
  if token and token ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. token
  end
  tokens = {}
  for t in string.gmatch(os.getenv("BENCH_TOKENS") or "", "%S+") do
    table.insert(tokens, t)
  end
  if mode == "submit" or mode == "repeat" or mode == "invalid" then
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
  end
  if mode == "status" or mode == "repeat" then
    ids = {}
    for line in io.lines(os.getenv("BENCH_IDS")) do
      if line ~= "" then
        table.insert(ids, line)
      end
    end
    n_ids = #ids
    -- threads start at different places of the list
    pos = ((tid - 1) * 7919) % n_ids
  end
end

local function model_body(id)
  return '{"task_id":"' .. id .. '","prompt":"' .. prompt .. '","texture":false}'
end

function request()
  if mode == "submit" then
    counter = counter + 1
    local body = model_body(tag .. "-" .. tid .. "-" .. counter)
    if #tokens > 0 then
      local h = { ["Content-Type"] = "application/json",
                  ["Authorization"] = "Bearer " .. tokens[(counter + tid) % #tokens + 1] }
      return wrk.format(nil, nil, h, body)
    end
    return wrk.format(nil, nil, nil, body)
  elseif mode == "repeat" then
    pos = pos % n_ids + 1
    return wrk.format(nil, nil, nil, model_body(ids[pos]))
  elseif mode == "status" then
    pos = pos % n_ids + 1
    return wrk.format(nil, "/tasks/" .. ids[pos] .. "/status")
  elseif mode == "invalid" then
    return wrk.format(nil, nil, nil, '{"task_id":"bench-invalid"}')
  end
  return wrk.format()
end

function response(status, headers, body)
  if status == expect then
    ok = ok + 1
  else
    bad = bad + 1
  end
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  local ok_t, bad_t, codes_t = 0, 0, {}
  for _, t in ipairs(threads) do
    ok_t = ok_t + (t:get("ok") or 0)
    bad_t = bad_t + (t:get("bad") or 0)
    local c = t:get("codes") or {}
    for k, v in pairs(c) do
      codes_t[k] = (codes_t[k] or 0) + v
    end
  end
  local parts = {}
  for k, v in pairs(codes_t) do
    table.insert(parts, string.format('"%s":%.0f', tostring(k), v))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%.0f,"duration_us":%.0f,"ok":%.0f,"bad":%.0f,"codes":{%s},' ..
    '"connect":%.0f,"read":%.0f,"write":%.0f,"status":%.0f,"timeout":%.0f,' ..
    '"p50_us":%.0f,"p90_us":%.0f,"p95_us":%.0f,"p99_us":%.0f,"mean_us":%.1f,"max_us":%.0f}\n',
    summary.requests, summary.duration, ok_t, bad_t, table.concat(parts, ","),
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95),
    latency:percentile(99), latency.mean, latency.max))
end
