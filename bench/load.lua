-- wrk script for every HTTP load the benchmarks send (bench/wrk.py sets the BENCH_* variables).
--
-- BENCH_MODE=ingest  POST /api/v1/telemetry/ingest/ with BENCH_BATCH readings per request (1: a single reading
--                    object). Reading number n = (k * threads + thread) * batch + i for the thread's k-th request:
--                    device = devices[n % #devices], timestamp = BENCH_BASE_US + n microseconds, so every reading
--                    of a run has its own (device, timestamp) and the client can say afterwards which readings
--                    each request carried. Every BENCH_BREACH_EVERY-th reading has temperature 150 (the rule the
--                    benchmarks define fires above 100); the others stay between 15 and 35.
--                    BENCH_GATEWAYS=G (batches only): request number r = k * threads + thread comes from gateway
--                    g = r % G, which serves the devices whose index is g modulo G; its readings take them in turn,
--                    so concurrent requests mostly hold other gateways' devices (wrk's connections of a thread
--                    send consecutive requests). The timestamps are those above: every reading stays unique.
-- BENCH_MODE=get     GET the paths listed in BENCH_PATHS (one a line), round robin, with BENCH_AUTH as the
--                    Authorization header when set.
-- BENCH_RATE         requests/s over all threads, held by delay(): each thread owns an absolute schedule (no drift)
--                    and each request takes its next slot; 0 or unset = as fast as the connections go.
-- BENCH_SUMMARY      where done() writes the JSON summary that bench/wrk.py reads.
--
-- With as many connections as threads (wrk -t N -c N), each thread's responses come back in request order, so
-- the statuses recorded per thread say exactly which requests were acknowledged (the soak relies on this).

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock_id, bench_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("bench_timespec")

local function now_us()
    ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
    return tonumber(timespec.tv_sec) * 1000000 + math.floor(tonumber(timespec.tv_nsec) / 1000)
end

local mode = os.getenv("BENCH_MODE") or "get"
local rate = tonumber(os.getenv("BENCH_RATE") or "0")
local thread_count = tonumber(os.getenv("BENCH_THREADS") or "1")

local function read_lines(path)
    local lines = {}
    for line in io.lines(path) do
        if line ~= "" then
            lines[#lines + 1] = line
        end
    end
    return lines
end

-- Main state: give each thread its number and keep the threads for done().
local threads = {}
local next_id = 0

function setup(thread)
    thread:set("id", next_id)
    next_id = next_id + 1
    threads[#threads + 1] = thread
end

-- Thread state. Globals, so done() can read them with thread:get().
id = 0
sent = 0          -- requests generated
responses = 0     -- responses received
acknowledged = 0  -- ingest: 201 responses
failures = ""     -- ingest: "k:status," for each request answered otherwise
failure_count = 0
late_count = 0    -- requests sent more than 10 ms after their slot (the rate was not held)
max_late_ms = 0
max_reading = -1  -- highest reading number generated

local devices, batch, base_us, breach_every, gateways, paths, auth
local headers = {}
local started_us, interval_us

function init(args)
    if mode == "ingest" then
        devices = read_lines(os.getenv("BENCH_DEVICES"))
        batch = tonumber(os.getenv("BENCH_BATCH") or "1")
        base_us = tonumber(os.getenv("BENCH_BASE_US"))
        breach_every = tonumber(os.getenv("BENCH_BREACH_EVERY") or "100")
        gateways = tonumber(os.getenv("BENCH_GATEWAYS") or "0")
        headers["Content-Type"] = "application/json"
    else
        paths = read_lines(os.getenv("BENCH_PATHS"))
        auth = os.getenv("BENCH_AUTH")
        if auth and auth ~= "" then
            headers["Authorization"] = auth
        end
    end
    if rate > 0 then
        -- Threads are staggered across one interval so they don't fire in step.
        interval_us = thread_count * 1000000 / rate
        started_us = now_us() + interval_us * id / thread_count
    end
end

local last_second, last_prefix

local function timestamp(us)
    local second = math.floor(us / 1000000)
    if second ~= last_second then
        last_second = second
        last_prefix = os.date("!%Y-%m-%dT%H:%M:%S", second)
    end
    return string.format("%s.%06dZ", last_prefix, us % 1000000)
end

-- The index (0-based) of the device of reading i of request r: devices[n % #devices] for reading number n, or the
-- turn of the devices of request r's gateway.
local function device_index(r, i, n)
    if gateways > 0 then
        local g = r % gateways
        local served = math.floor((#devices - 1 - g) / gateways) + 1
        return g + gateways * (i % served)
    end
    return n % #devices
end

local function reading(n, device)
    local temperature
    if n % breach_every == 0 then
        temperature = 150
    else
        temperature = 15 + (n % 2000) / 100
    end
    return string.format(
        '{"device_id":"%s","timestamp":"%s","metrics":{"temperature":%.2f,"humidity":%.1f,"pressure":%.1f}}',
        devices[device + 1], timestamp(base_us + n), temperature, 30 + (n % 500) / 10,
        990 + (n % 400) / 10
    )
end

-- wrk 4.1 calls thread 0's request() once before the thread starts, to check the request it builds (pipelining);
-- that request is never sent, so it must not take a request number.
local checked = false

function request()
    local k = sent
    if id == 0 and not checked then
        checked = true
    else
        sent = sent + 1
    end
    if mode == "ingest" then
        local r = k * thread_count + id
        local first = r * batch
        local body
        if batch == 1 then
            body = reading(first, device_index(r, 0, first))
        else
            local parts = {}
            for i = 0, batch - 1 do
                parts[i + 1] = reading(first + i, device_index(r, i, first + i))
            end
            body = "[" .. table.concat(parts, ",") .. "]"
        end
        max_reading = first + batch - 1
        return wrk.format("POST", "/api/v1/telemetry/ingest/", headers, body)
    end
    return wrk.format("GET", paths[((k * thread_count + id) % #paths) + 1], headers)
end

if rate > 0 then
    local slot = 0
    function delay()
        local due = started_us + slot * interval_us
        slot = slot + 1
        local wait_us = due - now_us()
        if wait_us < 0 then
            local late_ms = -wait_us / 1000
            if late_ms > 10 then
                late_count = late_count + 1
            end
            if late_ms > max_late_ms then
                max_late_ms = late_ms
            end
            return 0
        end
        return math.floor(wait_us / 1000)
    end
end

if mode == "ingest" then
    function response(status, headers, body)
        local k = responses
        responses = responses + 1
        if status == 201 and string.find(body, '"accepted":' .. batch .. ",", 1, true) then
            acknowledged = acknowledged + 1
        else
            failure_count = failure_count + 1
            if failure_count <= 10000 then  -- beyond, the soak's check reports the run unverifiable
                failures = failures .. k .. ":" .. status .. ","
            end
        end
    end
end

local function json_string(value)
    return '"' .. string.gsub(tostring(value), '[%c"\\]', function(c)
        return string.format("\\u%04x", string.byte(c))
    end) .. '"'
end

function done(summary, latency, requests)
    local out = {}
    local function add(key, value)
        out[#out + 1] = json_string(key) .. ":" .. value
    end
    add("requests", summary.requests)
    add("duration_us", summary.duration)
    add("bytes", summary.bytes)
    add(
        "errors",
        string.format(
            '{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}',
            summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
            summary.errors.timeout
        )
    )
    local percentiles = {}
    for _, p in ipairs({ 50, 75, 90, 95, 99, 99.9 }) do
        percentiles[#percentiles + 1] = string.format('"%s":%d', tostring(p), latency:percentile(p))
    end
    add(
        "latency_us",
        string.format(
            '{"min":%d,"mean":%.1f,"stdev":%.1f,"max":%d,%s}',
            latency.min, latency.mean, latency.stdev, latency.max, table.concat(percentiles, ",")
        )
    )
    local per_thread = {}
    for _, thread in ipairs(threads) do
        per_thread[#per_thread + 1] = string.format(
            '{"id":%d,"sent":%d,"responses":%d,"acknowledged":%d,"failure_count":%d,"failures":%s,'
                .. '"late_count":%d,"max_late_ms":%.1f,"max_reading":%d}',
            thread:get("id"), thread:get("sent"), thread:get("responses"), thread:get("acknowledged"),
            thread:get("failure_count"), json_string(thread:get("failures")), thread:get("late_count"),
            thread:get("max_late_ms"), thread:get("max_reading")
        )
    end
    add("threads", "[" .. table.concat(per_thread, ",") .. "]")
    local file = assert(io.open(os.getenv("BENCH_SUMMARY"), "w"))
    file:write("{" .. table.concat(out, ",") .. "}\n")
    file:close()
end
