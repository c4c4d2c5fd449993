-- Deletes the group's consumers that have nothing pending and have been idle at least ARGV[2]
-- milliseconds, atomically with that check: a consumer that still holds entries is never deleted
-- (its entries would leave the pending list unacknowledged, and so be lost to every claim).
-- KEYS[1]: stream; ARGV[1]: group; ARGV[2]: minimum idle time (ms); ARGV[3..]: only these
-- consumers (all when none). Returns the names deleted.
local reply = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(reply) ~= 'table' or reply.err then
  return {}
end
local only = nil
if #ARGV > 2 then
  only = {}
  for i = 3, #ARGV do
    only[ARGV[i]] = true
  end
end
local min_idle = tonumber(ARGV[2])
local deleted = {}
for _, fields in ipairs(reply) do
  local consumer = {}
  for i = 1, #fields, 2 do
    consumer[fields[i]] = fields[i + 1]
  end
  if consumer.pending == 0 and consumer.idle >= min_idle
      and (only == nil or only[consumer.name]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], consumer.name)
    deleted[#deleted + 1] = consumer.name
  end
end
return deleted
