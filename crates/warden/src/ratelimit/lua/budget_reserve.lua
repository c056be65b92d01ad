-- Token-budget reservation (runs after clock.lua): crates/warden/src/budget/algorithm.rs
-- `reserve`, transcribed. Times are integer microseconds and every value stays below 2^53, so
-- Lua's doubles hold them exactly.
-- KEYS[1]: the budget's key (hash: w = window start, n = weighted tokens held).
-- ARGV: now ('' = the Redis server's clock), limit, period, prompt, prompt weight, output
-- weight, max output (-1 = none).
-- Returns {granted (0|1), window, held, output (-1 = unlimited), remaining, reset_after,
-- fits_ever (0|1)}.
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local prompt = tonumber(ARGV[4])
local prompt_weight = tonumber(ARGV[5])
local output_weight = tonumber(ARGV[6])
local max_output = tonumber(ARGV[7])
local function int(x) return string.format('%d', x) end
local window = now - math.fmod(now, period)
local state = redis.call('HMGET', key, 'w', 'n')
local held = 0
if tonumber(state[1]) == window then held = tonumber(state[2]) end
local remaining = math.max(limit - held, 0)
local reset = window + period - now
local prompt_cost = prompt * prompt_weight
-- One output token at least, unless the request asks for none.
local first = 1
if max_output == 0 then first = 0 end
local least = prompt_cost + first * output_weight
if least > remaining then
  return {0, window, 0, 0, remaining, reset, (least <= limit) and 1 or 0}
end
local output
if output_weight == 0 then
  output = max_output
else
  output = math.floor((remaining - prompt_cost) / output_weight)
  if max_output >= 0 and max_output < output then output = max_output end
end
local cost = prompt_cost
if output > 0 then cost = cost + output * output_weight end
if cost > remaining then cost = remaining end
redis.call('HSET', key, 'w', int(window), 'n', int(held + cost))
-- Forget the key a second after its window ends (milliseconds, rounded up).
redis.call('PEXPIRE', key, math.ceil(reset / 1000) + 1000)
return {1, window, cost, output, remaining - cost, reset, 1}
