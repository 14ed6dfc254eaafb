"""Test data for the amber-dr Milvus driver, written and read with pymilvus (independent
of the driver). Usage: fixture.py HOST PORT COMMAND PREFIX
COMMAND: populate | empty | destroy | fingerprint.

`fixture.py HOST PORT serve` answers requests, one JSON object a line on stdin
({"cmd": COMMAND, "prefix": PREFIX} or {"cmd": "py", "code": PYTHON}), with one JSON line
{"ok": bool, "out": STDOUT or traceback} each: the tests keep one such process, so that
pymilvus is imported and connected once, not per call."""
import contextlib
import hashlib
import io
import json
import sys
import traceback

from pymilvus import (Collection, CollectionSchema, DataType, FieldSchema,
                      connections, utility)

host, port, cmd = sys.argv[1:4]
connections.connect(host=host, port=port, timeout=30)
prefix = A = B = None


def use(p):
    global prefix, A, B
    prefix, A, B = p, f"{p}_a", f"{p}_b"
DIM_A, DIM_B = 8, 16


def schema_a():
    return CollectionSchema([
        FieldSchema("id", DataType.INT64, is_primary=True, auto_id=True),
        FieldSchema("vec", DataType.FLOAT_VECTOR, dim=DIM_A),
        FieldSchema("title", DataType.VARCHAR, max_length=200, description="the title, ünïcödé"),
        FieldSchema("doc", DataType.JSON),
        FieldSchema("flag", DataType.BOOL),
        FieldSchema("i8", DataType.INT8),
        FieldSchema("i16", DataType.INT16),
        FieldSchema("i32", DataType.INT32),
        FieldSchema("f32", DataType.FLOAT),
        FieldSchema("f64", DataType.DOUBLE),
        FieldSchema("tags", DataType.ARRAY, element_type=DataType.INT64, max_capacity=5),
    ], description="awkward types, auto id, dynamic field", enable_dynamic_field=True)


def schema_b():
    return CollectionSchema([
        FieldSchema("key", DataType.VARCHAR, is_primary=True, max_length=64),
        FieldSchema("bits", DataType.BINARY_VECTOR, dim=DIM_B),
        FieldSchema("tenant", DataType.INT64, is_partition_key=True),
    ], description="varchar key, binary vector, partition key")


def rows_a(n, start):
    out = []
    for i in range(start, start + n):
        r = {
            "vec": [((i * 7 + j) % 13) / 7.0 - 0.5 for j in range(DIM_A)],
            "title": ["", "ünïcödé ✓", "quote \" and \\ backslash", "x" * 190][i % 4] + str(i),
            "doc": {"n": i, "nested": {"list": [1, "two", None]}, "s": "ключ"} if i % 3 else {},
            "flag": i % 2 == 0,
            "i8": (i % 256) - 128,
            "i16": -32768 if i == start else i,
            "i32": 2**31 - 1 - i,
            "f32": 1.0 / (i + 1),
            "f64": 1e300 / (i + 1),
            "tags": list(range(i % 6)),
        }
        if i % 5 == 0:
            r["extra_dyn"] = {"i": i}  # dynamic field
        out.append(r)
    return out


def create(name, schema, index_field, index):
    if utility.has_collection(name):
        utility.drop_collection(name)
    # A and B differ in consistency level, shard count and properties: a restore keeps each.
    if name == B:
        c = Collection(name, schema, consistency_level="Bounded", shards_num=2, num_partitions=4)
    else:
        c = Collection(name, schema, consistency_level="Strong", shards_num=1)
        c.set_properties({"collection.ttl.seconds": 1_000_000_000})
    c.create_index(index_field, index, index_name=f"{index_field}_idx")
    return c


def make(populated):
    try:
        utility.drop_alias(f"{prefix}_alias")
    except Exception:
        pass
    a = create(A, schema_a(), "vec", {"index_type": "IVF_FLAT", "metric_type": "L2", "params": {"nlist": 4}})
    a.create_index("title", {"index_type": "Trie"}, index_name="title_idx")
    a.create_partition("p1")
    b = create(B, schema_b(), "bits", {"index_type": "BIN_FLAT", "metric_type": "HAMMING", "params": {}})
    if populated:
        a.insert(rows_a(150, 0))
        a.insert(rows_a(60, 1000), partition_name="p1")
        keys = ["", " ", "a\"b", "ключ", "z" * 64] + [f"k{i:04}" for i in range(200)]
        b.insert([{"key": k, "bits": bytes([(i * 37) % 256, i % 256]), "tenant": i % 7}
                  for i, k in enumerate(keys)])
    a.flush()
    b.flush()
    a.load()  # a is loaded, b is not
    utility.create_alias(A, f"{prefix}_alias")


def destroy():
    a = Collection(A)
    a.load()
    ids = [r["id"] for r in a.query("id > 0", output_fields=["id"], limit=40)]
    a.delete(f"id in {ids}")
    rows = rows_a(5, 5000)
    if not a.schema.auto_id:
        for k, r in enumerate(rows):
            r["id"] = 10**12 + k
    a.insert(rows)
    a.flush()
    utility.drop_collection(B)


def rows_of(c, pk):
    fields = [f.name for f in c.schema.fields]
    if c.schema.enable_dynamic_field:
        fields.append("*")
    rows = c.query("", output_fields=fields, limit=16384) if False else []
    out = []
    last = None
    while True:
        expr = f"{pk} > {json.dumps(last)}" if last is not None else (f"{pk} >= \"\"" if c.schema.primary_field.dtype == DataType.VARCHAR else f"{pk} >= -9223372036854775807")
        page = c.query(expr, output_fields=fields, limit=1000)
        if not page:
            break
        page.sort(key=lambda r: r[pk])
        out.extend(page)
        last = page[-1][pk]
        if len(page) < 1000:
            break
    return out


def norm(v):
    if isinstance(v, (bytes, bytearray)):
        return v.hex()
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {k: norm(x) for k, x in sorted(v.items())}
    if hasattr(v, "tolist"):
        return norm(v.tolist())
    return v


def fingerprint():
    out = []
    for name in (A, B):
        if not utility.has_collection(name):
            out.append(f"{name}: absent")
            continue
        c = Collection(name)
        s = c.schema
        # auto_id is left out: a restore switches it off on purpose to keep the keys.
        fields = [(f.name, str(f.dtype), f.is_primary, f.is_partition_key, f.description,
                   sorted((k, str(v)) for k, v in f.params.items()))
                  for f in s.fields]
        out.append(f"{name}: {fields} dynamic={s.enable_dynamic_field} desc={s.description!r}")
        d = c.describe()
        props = d.get("properties") or {}
        if not isinstance(props, dict):
            props = {kv.key: kv.value for kv in props}
        out.append(f"  consistency={d.get('consistency_level')} shards={d.get('num_shards')} "
                   f"properties={sorted(props.items())}")
        out.append(f"  partitions={sorted(p.name for p in c.partitions) if not any(f.is_partition_key for f in s.fields) else len(c.partitions)}")
        out.append(f"  indexes={sorted((i.field_name, i.index_name, json.dumps(i.params, sort_keys=True)) for i in c.indexes)}")
        loaded = str(utility.load_state(name))
        out.append(f"  load_state={loaded} aliases={sorted(utility.list_aliases(name))}")
        was_loaded = "Loaded" in loaded
        if not was_loaded:
            c.load()
        pk = s.primary_field.name
        rows = rows_of(c, pk)
        for p in c.partitions:
            if not any(f.is_partition_key for f in s.fields):
                out.append(f"  partition {p.name}: {c.query('', output_fields=['count(*)'], partition_names=[p.name])[0]['count(*)']}")
        h = hashlib.sha256()
        for r in rows:
            h.update(json.dumps(norm(r), sort_keys=True, ensure_ascii=False).encode())
        out.append(f"  rows={len(rows)} sha={h.hexdigest()}")
        if not was_loaded:
            c.release()
    print("\n".join(out))


def live_bits(i):
    return bytes([(i * 37) % 256, (i * 11) % 256])


def write_until(stop):
    """An application: entities inserted into and deleted from B (keys live000000...), one
    line printed per round, until the file `stop` exists."""
    import os
    b = Collection(B)
    i = 0
    while not os.path.exists(stop):
        b.insert([{"key": f"live{i:06}", "bits": live_bits(i), "tenant": i % 7}])
        if i >= 5:
            b.delete(f'key in ["live{i - 5:06}"]')
        print(i, flush=True)
        i += 1


def check_live():
    """Every live entity of B holds what was written for it."""
    b = Collection(B)
    b.load()
    rows = b.query('key like "live%"', output_fields=["key", "bits", "tenant"], limit=16384)
    for r in rows:
        i = int(r["key"][4:])
        bits = r["bits"][0] if isinstance(r["bits"], list) else r["bits"]
        if bytes(bits) != live_bits(i) or r["tenant"] != i % 7:
            raise AssertionError(f"{r['key']}: not what was written: {r}")
    print(len(rows))


COMMANDS = {"populate": lambda: make(True), "empty": lambda: make(False),
            "destroy": destroy, "fingerprint": fingerprint, "check-live": check_live}


def serve():
    import pymilvus
    scope = {k: getattr(pymilvus, k) for k in dir(pymilvus) if not k.startswith("_")}
    for line in sys.stdin:
        req = json.loads(line)
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                if req["cmd"] == "py":
                    exec(req["code"], dict(scope))
                else:
                    use(req["prefix"])
                    COMMANDS[req["cmd"]]()
            ok = True
        except BaseException:
            out.write(traceback.format_exc())
            ok = False
        sys.stdout.write(json.dumps({"ok": ok, "out": out.getvalue()}) + "\n")
        sys.stdout.flush()


if cmd == "serve":
    serve()
elif cmd == "write-until":
    use(sys.argv[4])
    write_until(sys.argv[5])
elif cmd in COMMANDS:
    use(sys.argv[4])
    COMMANDS[cmd]()
else:
    sys.exit(f"unknown command {cmd}")
