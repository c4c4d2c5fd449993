-- Trims a stream to what its consumer groups still need, in one atomic step (no group can move
-- between the reading and the trim): for each group, its oldest pending id, or when nothing is
-- pending its last delivered id (kept, as a marker of where it stands). Entries below the lowest
-- of these, and below ARGV[1] (the keep window's lower edge), are removed; a stream without
-- groups is left alone. (groups.lua is prepended: stream_groups.)
-- KEYS[1]: stream; ARGV[1]: keep-window edge id (nothing at or after it is trimmed)
-- Returns {entries removed, the MINID used or false}.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local ams, aseq = parse(a)
  local bms, bseq = parse(b)
  return ams < bms or (ams == bms and aseq < bseq)
end
local groups = stream_groups(KEYS[1])
if not groups or #groups == 0 then
  return {0, false}
end
local floor = ARGV[1]
for _, g in ipairs(groups) do
  local pending = redis.call('XPENDING', KEYS[1], g.name)
  local needed = pending[2] or g.delivered
  if less(needed, floor) then
    floor = needed
  end
end
return {redis.call('XTRIM', KEYS[1], 'MINID', floor), floor}
