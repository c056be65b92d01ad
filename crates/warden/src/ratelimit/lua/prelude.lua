-- Shared head of every Warden rate-limit script: the arithmetic of
-- crates/warden/src/ratelimit/algorithm.rs, transcribed. Times are integer microseconds; every
-- value stays below 2^53, so Lua's doubles hold them exactly.
-- KEYS[1]: the key. ARGV: now ('' = the Redis server's clock), limit, period, cost, capacity,
-- max_delay (-1 = refuse rather than delay).
-- Returns {allowed (0|1), limit, remaining, reset_after, retry_after (-1 = none), delay (-1 = none)}.
local limit = tonumber(ARGV[2])
local period = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local capacity = tonumber(ARGV[5])
local max_delay = tonumber(ARGV[6])
-- Numbers written to Redis as plain integers (Lua's default formatting would use exponents).
local function int(x) return string.format('%d', x) end
-- Integer quotient: exact while the dividend is below 2^53.
local function div(a, b) return math.floor(a / b) end
-- Forget the key once its state no longer matters (milliseconds, rounded up).
local function keep(us) redis.call('PEXPIRE', key, math.ceil(us / 1000) + 1) end
