-- Token-budget settlement: crates/warden/src/budget/algorithm.rs `settle`, transcribed.
-- KEYS[1]: the budget's key. ARGV: the grant's window, what it held, what it really cost.
-- A grant from an ended window changes nothing (the key has moved on or expired).
if redis.replicate_commands then redis.replicate_commands() end
local state = redis.call('HMGET', KEYS[1], 'w', 'n')
if tonumber(state[1]) ~= tonumber(ARGV[1]) then return 0 end
local held = tonumber(state[2]) - tonumber(ARGV[2]) + tonumber(ARGV[3])
if held < 0 then held = 0 end
redis.call('HSET', KEYS[1], 'n', string.format('%d', held))
return 1
