"""Tile records in Redis (``tiles.py``): one hash per (project, entity key, feature table, layout).

Key: ``pv:<project>:{<entity key>}:<feature table>:t<layout id>`` (the entity key's hash tag, as
for rows, so a key's row and tiles share a cluster slot). Fields: those of ``tiles.py`` plus
``v``, a version counter bumped by every change.

An update is optimistic: one round trip reads every key's fields (``HMGET``, with ``v``), the
merge runs in Python, and one round trip sends the changes through a Lua script that applies a
key's change only if its ``v`` is still the one read (compare-and-set; appends are done by the
script, so events are never read by the writer). Keys changed meanwhile by another writer are
read and merged again. Every change of a key is atomic (a script runs alone).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import cast

import msgpack  # type: ignore[import-untyped]

from provender.errors import BackendError
from provender.online.tiles import MAX_APPENDED_STATES, TileAppended, TileAppends, TileMerge

# KEYS: the records; ARGV per key: expected version ('' if none), #set, #append, #delete, then
# the set pairs, the append pairs, the deleted fields. Returns per key 1 (applied) or 0 (conflict).
CAS_SCRIPT = """
local results = {}
local a = 1
for k = 1, #KEYS do
  local key = KEYS[k]
  local nset, napp, ndel = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3])
  local version = redis.call('HGET', key, 'v') or ''
  if version ~= ARGV[a] then
    results[k] = 0
    a = a + 4 + 2 * nset + 2 * napp + ndel
  else
    a = a + 4
    for _ = 1, nset do
      redis.call('HSET', key, ARGV[a], ARGV[a + 1])
      a = a + 2
    end
    for _ = 1, napp do
      local old = redis.call('HGET', key, ARGV[a]) or ''
      redis.call('HSET', key, ARGV[a], old .. ARGV[a + 1])
      a = a + 2
    end
    for _ = 1, ndel do
      redis.call('HDEL', key, ARGV[a])
      a = a + 1
    end
    redis.call('HINCRBY', key, 'v', 1)
    results[k] = 1
  end
end
return results
"""
CAS_SHA = hashlib.sha1(CAS_SCRIPT.encode(), usedforsecurity=False).hexdigest()
VERSION = b"v"
MAX_ATTEMPTS = 50
_KEYS_PER_CALL = 64

Command = tuple[bytes | str, ...]
Run = Callable[[list[Command]], list[object]]
"""Sends commands in one round trip and returns their replies."""


def read(run: Run, records: Sequence[bytes], fields: Sequence[bytes]) -> list[list[bytes | None]]:
    """``HMGET`` the same fields of every record, in one round trip."""
    if not records:
        return []
    replies = run([("HMGET", record, *fields) for record in records])
    return [cast(list[bytes | None], reply) for reply in replies]


def update(
    run: Run,
    records: Sequence[bytes],
    fields: Sequence[Sequence[bytes]],
    merge: TileMerge,
    *,
    group: Callable[[Sequence[int]], list[list[int]]],
) -> None:
    """Read, merge and compare-and-set every record until each change is applied.

    Args:
        run: sends commands (the script must be loaded: ``SCRIPT LOAD`` of :data:`CAS_SCRIPT`).
        records: the Redis keys.
        fields: per record, the fields ``merge`` reads.
        merge: the change of record ``i`` from its stored values.
        group: splits record indexes into groups a script call may hold together (one slot).

    Raises:
        BackendError: a record kept changing under us (retryable).
    """
    pending = list(range(len(records)))
    for _ in range(MAX_ATTEMPTS):
        if not pending:
            return
        replies = run([("HMGET", records[i], VERSION, *fields[i]) for i in pending])
        versions: dict[int, bytes] = {}
        changes = {}
        for i, reply in zip(pending, replies, strict=True):
            values = cast(list[bytes | None], reply)
            change = merge(i, values[1:])
            if change is not None:
                versions[i] = values[0] or b""
                changes[i] = change
        calls: list[Command] = []
        order: list[list[int]] = []
        for members in group(list(changes)):
            for start in range(0, len(members), _KEYS_PER_CALL):
                chunk = members[start : start + _KEYS_PER_CALL]
                args: list[bytes] = []
                for i in chunk:
                    change = changes[i]
                    args += [
                        versions[i],
                        b"%d" % len(change.set),
                        b"%d" % len(change.append),
                        b"%d" % len(change.delete),
                    ]
                    for field, value in change.set.items():
                        args += [field, value]
                    for field, value in change.append.items():
                        args += [field, value]
                    args += change.delete
                calls.append(("EVALSHA", CAS_SHA, b"%d" % len(chunk), *(records[i] for i in chunk), *args))
                order.append(chunk)
        results = run(calls) if calls else []
        pending = [
            i
            for chunk, result in zip(order, results, strict=True)
            for i, ok in zip(chunk, cast(list[int], result), strict=True)
            if not ok
        ]
    if pending:
        raise BackendError(
            f"Redis online store: {len(pending)} tile record(s) kept changing during {MAX_ATTEMPTS} attempts; "
            "retry the batch.",
            retryable=True,
        )


# Appends folded batches without a read (``tiles.TileAppends``). KEYS: the records; ARGV[1]:
# msgpack (str for bytes: Redis's cmsgpack has no bin type) of [lateness + longest window, tile
# size, MAX_APPENDED_STATES, the batch's tiles, their decimals, its offset fields]; ARGV[2] to
# ARGV[6]: msgpack arrays of the keys' heads, partition entries, tiles, states and events
# (``TileAppends``' columns; tiles and partitions by their index in ARGV[1]). Per key one HMGET
# (version, watermark, batch floor, its partitions' offsets, its tiles' state, events and count
# of appended states) and one HSET; only a tile new to the key also reads the tile set ``t`` (a
# tile is in it exactly when it has a state), rewrites it and deletes the tiles no read can
# reach. Returns per key 0 (refused: a replay, a too-late event or one at or before the batch
# floor ``b``; nothing changed), 1 (applied) or the tiles whose states should be compacted.
# Numbers are exact below 2^53 (the writer checks its own; stored ones beyond are refused).
APPEND_SCRIPT = """
local head = cmsgpack.unpack(ARGV[1])
local reach, size, most, tiles, names, parts = head[1], head[2], head[3], head[4], head[5], head[6]
local sf, ef, cf = {}, {}, {}
for j = 1, #tiles do
  sf[j], ef[j], cf[j] = 's' .. names[j], 'e' .. names[j], 'c' .. names[j]
end
local hd, en, gr = cmsgpack.unpack(ARGV[2]), cmsgpack.unpack(ARGV[3]), cmsgpack.unpack(ARGV[4])
local st, ev = cmsgpack.unpack(ARGV[5]), cmsgpack.unpack(ARGV[6])
local exact = 9007199254740992
local single = {}  -- per tile of the batch, the tile set holding it alone
for j = 1, #tiles do single[j] = cmsgpack.pack({tiles[j]}) end
local counts = {}
for c = 1, most do counts[c] = string.format('%d', c) end
local results = {}
local function tag(tile) return string.format('%d', tile) end
local at, po, go = 1, 1, 1  -- cursors: heads, partition entries, tiles
for k = 1, #KEYS do
  local key = KEYS[k]
  local limit, latest, encoded, earliest, np, ng = hd[at], hd[at + 1], hd[at + 2], hd[at + 3], hd[at + 4], hd[at + 5]
  at = at + 6
  local stored
  if np == 1 and ng == 1 then  -- the usual shape: no table to build
    local t = gr[go]
    stored = redis.call('HMGET', key, 'v', 'w', 'b', parts[en[po]], sf[t], ef[t], cf[t])
  else
    local fields = {'v', 'w', 'b'}
    for j = 0, np - 1 do fields[4 + j] = parts[en[po + 3 * j]] end
    local n = 3 + np
    for j = 0, ng - 1 do
      local t = gr[go + j]
      fields[n + 1], fields[n + 2], fields[n + 3] = sf[t], ef[t], cf[t]
      n = n + 3
    end
    stored = redis.call('HMGET', key, unpack(fields))
  end
  local ok, watermark = true, nil
  if stored[2] then
    watermark = cmsgpack.unpack(stored[2])
    if watermark > limit or watermark >= exact or watermark <= -exact then ok = false end
  end
  if ok and stored[3] then  -- batch ingestion rebuilt the tiles up to b: later events only
    local floor = cmsgpack.unpack(stored[3])
    if floor >= earliest or floor >= exact then ok = false end
  end
  if ok then
    for j = 0, np - 1 do
      local packed = stored[4 + j]
      if packed then
        local offset = cmsgpack.unpack(packed)
        if offset >= en[po + 3 * j + 1] or offset >= exact then
          ok = false
          break
        end
      end
    end
  end
  if not ok then
    results[k] = 0
  elseif np == 1 and ng == 1 and not stored[1] then
    -- A record never written (every change sets 'v'): its one tile is new and reachable (it
    -- holds the latest time), nothing to read or delete.
    local t = gr[go]
    redis.call('HSET', key, 'v', '1', 'w', encoded, parts[en[po]], en[po + 2], sf[t], st[go], ef[t], ev[go],
      't', single[t])
    results[k] = 1
  elseif np == 1 and ng == 1 and stored[5] then
    -- The usual change (one partition, one tile that has a state): one HSET, no table built;
    -- the same fields as below ('w' rewritten as it is when it does not move). Numbers go as
    -- strings ('%d'): Redis would format a Lua number with '%.17g', several times slower.
    local t = gr[go]
    local tile, w = tiles[t], stored[2]
    if watermark == nil or latest > watermark then watermark, w = latest, encoded end
    local version = string.format('%d', (tonumber(stored[1]) or 0) + 1)
    if (tile + 1) * size > watermark - reach then
      local c = (tonumber(stored[7]) or 0) + 1
      redis.call('HSET', key, 'v', version, 'w', w, parts[en[po]], en[po + 2], sf[t], stored[5] .. st[go],
        cf[t], counts[c] or string.format('%d', c), ef[t], (stored[6] or '') .. ev[go])
      if c + 1 >= most then results[k] = {tile} else results[k] = 1 end
    else
      redis.call('HSET', key, 'v', version, 'w', w, parts[en[po]], en[po + 2])
      results[k] = 1
    end
  else
    local sets = {'v', (tonumber(stored[1]) or 0) + 1}
    local s = 2
    if watermark == nil or latest > watermark then
      watermark = latest
      sets[3], sets[4] = 'w', encoded
      s = 4
    end
    for j = 0, np - 1 do
      sets[s + 1], sets[s + 2] = parts[en[po + 3 * j]], en[po + 3 * j + 2]
      s = s + 2
    end
    local horizon = watermark - reach
    local compact, fresh = {}, nil
    local base = 3 + np
    for j = 0, ng - 1 do
      local t = gr[go + j]
      local tile = tiles[t]
      if (tile + 1) * size > horizon then
        local state, events, count = stored[base + 1], stored[base + 2], stored[base + 3]
        if state then
          local c = (tonumber(count) or 0) + 1
          sets[s + 1], sets[s + 2], sets[s + 3], sets[s + 4] = sf[t], state .. st[go + j], cf[t], c
          s = s + 4
          if c + 1 >= most then compact[#compact + 1] = tile end
        else
          sets[s + 1], sets[s + 2] = sf[t], st[go + j]
          s = s + 2
          if fresh == nil then fresh = {} end
          fresh[#fresh + 1] = tile  -- a tile without a state is not in the tile set yet
        end
        sets[s + 1], sets[s + 2] = ef[t], (events or '') .. ev[go + j]
        s = s + 2
      end
      base = base + 3
    end
    if fresh ~= nil then
      local packed = redis.call('HGET', key, 't')
      local present = {}
      if packed then present = cmsgpack.unpack(packed) end  -- ascending
      local previous, newest = present[#present], fresh[1]
      for _, tile in ipairs(fresh) do
        if tile > newest then newest = tile end
      end
      if previous ~= nil and newest > previous and (previous + 1) * size > horizon then
        if redis.call('HEXISTS', key, 'c' .. tag(previous)) == 1 then compact[#compact + 1] = previous end
      end
      local seen, kept, doomed = {}, {}, {}
      for _, tile in ipairs(present) do seen[tile] = true end
      for _, tile in ipairs(fresh) do seen[tile] = true end
      for tile in pairs(seen) do
        if (tile + 1) * size <= horizon then
          doomed[#doomed + 1] = 's' .. tag(tile)
          doomed[#doomed + 1] = 'e' .. tag(tile)
          doomed[#doomed + 1] = 'c' .. tag(tile)
        else
          kept[#kept + 1] = tile
        end
      end
      table.sort(kept)
      sets[s + 1], sets[s + 2] = 't', cmsgpack.pack(kept)
      if #doomed > 0 then redis.call('HDEL', key, unpack(doomed)) end
    end
    redis.call('HSET', key, unpack(sets))
    if #compact > 0 then results[k] = compact else results[k] = 1 end
  end
  po, go = po + 3 * np, go + ng
end
return results
"""
APPEND_SHA = hashlib.sha1(APPEND_SCRIPT.encode(), usedforsecurity=False).hexdigest()
_APPENDS_PER_CALL = 256
_pack_str = msgpack.Packer(use_bin_type=False).pack


def append(
    run: Run,
    records: Sequence[bytes],
    appends: TileAppends,
    *,
    reach_us: int,
    tile_us: int,
    group: Callable[[Sequence[int]], list[list[int]]],
) -> list[TileAppended]:
    """Apply each record's folded batch without reading it first (one script call per chunk of keys).

    Args:
        run: sends commands (the script must be loaded: ``SCRIPT LOAD`` of :data:`APPEND_SCRIPT`).
        records: the Redis keys.
        appends: the records' folded batches, encoded (record ``i``'s are ``appends``' key ``i``).
        reach_us: the allowed lateness plus the longest window (tiles ending before the
            watermark minus this are deleted).
        tile_us: the tile size.
        group: splits record indexes into groups a script call may hold together (one slot).

    Returns:
        Per record: 0 refused, 1 applied, or the tiles (applied) to compact (:data:`TileAppended`).
    """
    head = _pack_str(
        [reach_us, tile_us, MAX_APPENDED_STATES, appends.tiles, [b"%d" % t for t in appends.tiles], appends.partitions]
    )
    columns = _Columns(appends)
    calls: list[Command] = []
    order: list[list[int]] = []
    for members in group(range(len(records))):
        for start in range(0, len(members), _APPENDS_PER_CALL):
            chunk = members[start : start + _APPENDS_PER_CALL]
            keys = (records[i] for i in chunk)
            calls.append(("EVALSHA", APPEND_SHA, b"%d" % len(chunk), *keys, head, *columns.of(chunk)))
            order.append(chunk)
    results: list[TileAppended] = [0] * len(records)
    for chunk, reply in zip(order, run(calls) if calls else [], strict=True):
        for i, status in zip(chunk, cast(list[TileAppended], reply), strict=True):
            results[i] = status
    return results


class _Columns:
    """The script's column arguments (msgpack arrays) for chunks of keys of a :class:`TileAppends`."""

    def __init__(self, appends: TileAppends) -> None:
        self.appends = appends
        a = appends
        # per column: its bytes, where each key's rows start (bytes), items per row unit, unit bounds
        self.columns = [
            (a.heads, [i * a.head_width for i in range(len(a.entry_bounds))], 6, None),
            (a.entries, [e * a.entry_width for e in a.entry_bounds], 3, a.entry_bounds),
            (a.groups, [g * a.group_width for g in a.group_bounds], 1, a.group_bounds),
            (a.states, a.state_bounds, 1, a.group_bounds),
            (a.events, a.event_bounds, 1, a.group_bounds),
        ]

    def of(self, chunk: Sequence[int]) -> list[bytes]:
        """The five arrays for keys ``chunk`` (their bytes are one slice when the keys are consecutive)."""
        consecutive = chunk[-1] - chunk[0] == len(chunk) - 1
        arrays = []
        for data, bounds, per_unit, units in self.columns:
            if units is None:
                count = per_unit * len(chunk)
            elif consecutive:
                count = per_unit * (units[chunk[-1] + 1] - units[chunk[0]])
            else:
                count = per_unit * sum(units[i + 1] - units[i] for i in chunk)
            if consecutive:
                body = data[bounds[chunk[0]] : bounds[chunk[-1] + 1]]
            else:
                body = b"".join(data[bounds[i] : bounds[i + 1]] for i in chunk)
            arrays.append(b"\xdd" + count.to_bytes(4, "big") + body)  # msgpack array 32
        return arrays
