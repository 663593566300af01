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

from provender.errors import BackendError
from provender.online.tiles import TileMerge

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
