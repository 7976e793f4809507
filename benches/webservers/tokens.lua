-- wrk script: every request carries `Authorization: Bearer TOKEN`, the
-- tokens read from a file (one per line; a line with a space is sent as
-- the whole header value, e.g. `Basic dXNlcjpwdw==`).
--
--   wrk -t2 -c32 -d2s -s tokens.lua URL -- TOKENS_FILE MODE THREADS
--
-- MODE "cycle": each thread walks the whole file from its own starting
-- point, round and round (the hit pool: every token seen again and again).
-- MODE "once": the file is split into THREADS disjoint slices, one per
-- thread, each walked once; a thread that runs out starts its slice again
-- and counts a wrap (the miss pool: every token seen once, so a report with
-- wraps = 0 is a pure miss path).
--
-- With WRK_COUNT=1 in the environment the script also counts the answers
-- by status (wrk then parses every response's headers for Lua, which
-- costs wrk time: the throughput rows run without it).
--
-- done() prints one line "WRKJSON {...}" with requests, duration, rate,
-- p50/p99 latency, wrk's error counts, wraps and status counts.

local file, mode, nthreads
local reqs = {}
local n, i = 0, 0
wraps = 0
status_counts = {}
local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  file, mode, nthreads = args[1], args[2] or "cycle", tonumber(args[3] or "1")
  local all = {}
  for line in io.lines(file) do
    if #line > 0 then all[#all + 1] = line end
  end
  local first, last = 1, #all
  if mode == "once" then
    local per = math.floor(#all / nthreads)
    first = id * per + 1
    last = first + per - 1
  end
  local path = wrk.path
  for k = first, last do
    -- A line with a space is a whole Authorization value ("Basic ..."):
    -- tokens have none.
    local auth = all[k]:find(" ", 1, true) and all[k] or ("Bearer " .. all[k])
    reqs[#reqs + 1] = wrk.format("GET", path, { ["Authorization"] = auth })
  end
  n = #reqs
  if mode == "cycle" then
    -- Threads start at different tokens.
    i = (id * math.floor(n / math.max(nthreads, 1))) % n
  end
  wraps = 0
end

function request()
  i = i + 1
  if i > n then
    i = 1
    wraps = wraps + 1
  end
  return reqs[i]
end

if os.getenv("WRK_COUNT") then
  function response(status, headers, body)
    status_counts[status] = (status_counts[status] or 0) + 1
  end
end

function done(summary, latency, requests)
  local total_wraps = 0
  local counts = {}
  for _, t in ipairs(threads) do
    local w = t:get("wraps")
    total_wraps = total_wraps + (w or 0)
    local c = t:get("status_counts") or {}
    for s, v in pairs(c) do counts[s] = (counts[s] or 0) + v end
  end
  local parts = {}
  for s, v in pairs(counts) do parts[#parts + 1] = string.format('"%d": %d', s, v) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "rps": %.1f, "p50_us": %d, "p99_us": %d, ' ..
    '"non2xx": %d, "connect_errors": %d, "read_errors": %d, "write_errors": %d, "timeouts": %d, ' ..
    '"wraps": %d, "status": {%s}}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect, e.read, e.write, e.timeout, total_wraps, table.concat(parts, ", ")))
end
