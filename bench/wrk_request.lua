-- wrk script for bench/proxies.py: one fixed request, set from the environment.
--   WRK_BODY_FILE  the request body (POST)
--   WRK_HEADERS    header lines, "Name: value" separated by newlines
--   WRK_DELAY_MS   if > 0, each connection waits before each request, a random time
--                  with this mean (closed loop with think time: wrk 4.1 has no
--                  fixed-rate mode). Exponential, so that connections do not fall into
--                  step and arrive in bursts; rounded at random to wrk's whole ms so
--                  that the mean holds.
wrk.method = "POST"

local body_file = os.getenv("WRK_BODY_FILE")
if body_file and body_file ~= "" then
  local f = assert(io.open(body_file, "rb"))
  wrk.body = f:read("*a")
  f:close()
end

for line in string.gmatch(os.getenv("WRK_HEADERS") or "", "[^\n]+") do
  local name, value = string.match(line, "^([^:]+):%s*(.*)$")
  if name then
    wrk.headers[name] = value
  end
end

local pause = tonumber(os.getenv("WRK_DELAY_MS") or "0") or 0
if pause > 0 then
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
  function delay()
    local wait = -pause * math.log(1 - math.random())
    return math.floor(wait + math.random())
  end
end
