"""Server-side (Lua) steps that must be atomic: scan start/end, heartbeat, holds, trimming.

Retention rule, applied by ``apply_ttl`` each time a scan's state or holds change:
a scan's ``meta``, ``data`` and ``holds`` keys always carry a TTL of

* ``heartbeat + expire_after_end`` while it runs (refreshed by every heartbeat),
* ``expire_after_end`` once it has ended (from the end, or from the last hold change),

extended to the longest live hold. Lapsed holds are dropped when met. Keys are named
from the session and scan number inside the scripts, so this needs a standalone
Redis (not Redis Cluster).
"""

from __future__ import annotations

from redis.commands.core import Script
from redis.connection import Encoder

_COMMON = r"""
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function scan_prefix(s, nb) return 'bipy:scan:' .. s .. ':' .. nb .. ':' end
local function session_prefix(s) return 'bipy:session:' .. s .. ':' end
local function longest_hold(p, now)
  local longest = 0
  local holds = redis.call('HGETALL', p .. 'holds')
  for i = 1, #holds, 2 do
    local left = tonumber(holds[i + 1]) - now
    if left <= 0 then redis.call('HDEL', p .. 'holds', holds[i])
    elseif left > longest then longest = left end
  end
  return longest
end
local function apply_ttl(p)
  local m = redis.call('HMGET', p .. 'meta', 'state', 'heartbeat_ms', 'expire_ms')
  if not m[1] then return -1 end
  local ttl = tonumber(m[3])
  if m[1] == 'RUNNING' then ttl = ttl + tonumber(m[2]) end
  local hold = longest_hold(p, now_ms())
  if hold > ttl then ttl = hold end
  if ttl < 1 then ttl = 1 end
  redis.call('PEXPIRE', p .. 'meta', ttl)
  redis.call('PEXPIRE', p .. 'data', ttl)
  redis.call('PEXPIRE', p .. 'holds', ttl)
  return ttl
end
local function end_scan(s, nb, reason, by, time, counts, info, maxlen)
  local p = scan_prefix(s, nb)
  redis.call('XADD', p .. 'data', '*', 't', 'end', 'reason', reason, 'by', by,
             'time', time, 'counts', counts, 'info', info)
  redis.call('HSET', p .. 'meta', 'state', 'ENDED', 'end_reason', reason, 'end_by', by,
             'end_time', time, 'end_counts', counts, 'end_info', info)
  redis.call('DEL', p .. 'alive')
  redis.call('XADD', session_prefix(s) .. 'events', 'MAXLEN', '~', maxlen, '*',
             't', 'end_scan', 'nb', nb, 'reason', reason)
  apply_ttl(p)
end
local function redis_time_s()
  local t = redis.call('TIME')
  return string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
end
local function declare_dead(s, nb, maxlen)
  local p = scan_prefix(s, nb)
  if redis.call('HGET', p .. 'meta', 'state') ~= 'RUNNING' then return 0 end
  if redis.call('EXISTS', p .. 'alive') == 1 then return 0 end
  end_scan(s, nb, 'DIED', 'watchdog', redis_time_s(), '{}', '{}', maxlen)
  return 1
end
"""

# ARGV: session, nb, max_scans, maxlen, scan name. Runs inside the start transaction,
# after meta, node entries and the heartbeat key are written.
START = _COMMON + r"""
local s, nb, max_scans, maxlen, name = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local p, sp = scan_prefix(s, nb), session_prefix(s)
local now = now_ms()
local sh = redis.call('HGETALL', sp .. 'holds')
for i = 1, #sh, 2 do
  if tonumber(sh[i + 1]) > now then redis.call('HSET', p .. 'holds', sh[i], sh[i + 1])
  else redis.call('HDEL', sp .. 'holds', sh[i]) end
end
redis.call('ZADD', sp .. 'scans', nb, nb)
redis.call('XADD', sp .. 'events', 'MAXLEN', '~', maxlen, '*', 't', 'new_scan', 'nb', nb,
           'name', name)
apply_ttl(p)
local members = redis.call('ZRANGE', sp .. 'scans', 0, -1)
local n = #members
for _, m in ipairs(members) do
  local q = scan_prefix(s, m)
  declare_dead(s, m, maxlen)
  local state = redis.call('HGET', q .. 'meta', 'state')
  if not state then
    redis.call('ZREM', sp .. 'scans', m); n = n - 1
  elseif n > max_scans and state == 'ENDED' and longest_hold(q, now) == 0 then
    redis.call('DEL', q .. 'meta', q .. 'data', q .. 'holds', q .. 'alive')
    redis.call('ZREM', sp .. 'scans', m); n = n - 1
  end
end
return 1
"""

# ARGV: session, nb, reason, time, counts JSON, info JSON, maxlen
END = _COMMON + r"""
local s, nb = ARGV[1], ARGV[2]
local state = redis.call('HGET', scan_prefix(s, nb) .. 'meta', 'state')
if state ~= 'RUNNING' then return state or 'MISSING' end
end_scan(s, nb, ARGV[3], 'producer', ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return 'OK'
"""

# ARGV: session, nb -> 1 refreshed, 0 scan not running (ended or declared dead), -1 gone
HEARTBEAT = _COMMON + r"""
local p = scan_prefix(ARGV[1], ARGV[2])
local m = redis.call('HMGET', p .. 'meta', 'state', 'heartbeat_ms')
if not m[1] then return -1 end
if m[1] ~= 'RUNNING' then return 0 end
redis.call('SET', p .. 'alive', '1', 'PX', m[2])
apply_ttl(p)
return 1
"""

# ARGV: session, maxlen, nb... -> list of the scan numbers declared dead
DECLARE_DEAD = _COMMON + r"""
local dead = {}
for i = 3, #ARGV do
  if declare_dead(ARGV[1], ARGV[i], ARGV[2]) == 1 then table.insert(dead, ARGV[i]) end
end
return dead
"""

# ARGV: session, nb, holder, ttl_ms -> new TTL (ms), -1 if the scan is gone
HOLD = _COMMON + r"""
local p = scan_prefix(ARGV[1], ARGV[2])
if redis.call('EXISTS', p .. 'meta') == 0 then return -1 end
redis.call('HSET', p .. 'holds', ARGV[3], now_ms() + tonumber(ARGV[4]))
return apply_ttl(p)
"""

# ARGV: session, nb, holder -> new TTL (ms), -1 if the scan is gone
RELEASE = _COMMON + r"""
local p = scan_prefix(ARGV[1], ARGV[2])
redis.call('HDEL', p .. 'holds', ARGV[3])
return apply_ttl(p)
"""

# ARGV: session, holder, ttl_ms, existing (0/1) -> number of existing scans now held
SESSION_HOLD = _COMMON + r"""
local s, holder = ARGV[1], ARGV[2]
local sp = session_prefix(s)
local deadline = now_ms() + tonumber(ARGV[3])
redis.call('HSET', sp .. 'holds', holder, deadline)
local longest = 0
local sh = redis.call('HGETALL', sp .. 'holds')
for i = 2, #sh, 2 do
  if tonumber(sh[i]) > longest then longest = tonumber(sh[i]) end
end
redis.call('PEXPIREAT', sp .. 'holds', longest)
local n = 0
if ARGV[4] == '0' then return 0 end
for _, m in ipairs(redis.call('ZRANGE', sp .. 'scans', 0, -1)) do
  local q = scan_prefix(s, m)
  if redis.call('EXISTS', q .. 'meta') == 1 then
    redis.call('HSET', q .. 'holds', holder, deadline)
    apply_ttl(q)
    n = n + 1
  end
end
return n
"""

# ARGV: session, holder, include_scans (0/1)
SESSION_RELEASE = _COMMON + r"""
local s, holder = ARGV[1], ARGV[2]
local sp = session_prefix(s)
redis.call('HDEL', sp .. 'holds', holder)
if ARGV[3] == '1' then
  for _, m in ipairs(redis.call('ZRANGE', sp .. 'scans', 0, -1)) do
    local q = scan_prefix(s, m)
    if redis.call('HDEL', q .. 'holds', holder) == 1 then apply_ttl(q) end
  end
end
return 1
"""

_SOURCES = {
    "start": START,
    "end": END,
    "heartbeat": HEARTBEAT,
    "declare_dead": DECLARE_DEAD,
    "hold": HOLD,
    "release": RELEASE,
    "session_hold": SESSION_HOLD,
    "session_release": SESSION_RELEASE,
}

_registered: dict[str, Script] = {}


class _EncoderOnly:
    """What redis-py's ``Script`` needs from its "registered client": an encoder."""

    @staticmethod
    def get_encoder():
        return Encoder(encoding="utf-8", encoding_errors="strict", decode_responses=False)


def run(client, name: str, *args) -> object:
    """Run script ``name`` with ``args`` on ``client`` (a Redis client or pipeline).

    Uses EVALSHA and loads the script on first use (redis-py ``Script``).
    """
    found = _registered.get(name)
    if found is None:
        found = _registered[name] = Script(_EncoderOnly(), _SOURCES[name])
    return found(keys=[], args=list(args), client=client)
