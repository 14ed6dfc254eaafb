# Collections in every state (issue 15), written and read with pymilvus only. Executed by
# the fixture's `py` command: `setup(P)` creates them, `dump(P)` describes everything a
# restore must bring back (schemas with auto-id flags, indexes, aliases, load states,
# partitions, every entity with every field).
import hashlib, json, time
from pymilvus import (Collection, CollectionSchema, DataType, FieldSchema, Partition,
                      utility)

def _vec(i, d):
    return [((i * 7 + j) % 11) / 5.0 - 1.0 for j in range(d)]

def _bits(i, d):
    return bytes(((i * 31 + k) % 256) for k in range(d // 8))

def _fresh(name, schema, **kw):
    if utility.has_collection(name):
        utility.drop_collection(name)
    return Collection(name, schema, **kw)

def setup(p):
    for a in list(utility.list_aliases(f"{p}_auto")) if utility.has_collection(f"{p}_auto") else []:
        utility.drop_alias(a)
    if f"{p}_alias" in [a for c in utility.list_collections() for a in utility.list_aliases(c)]:
        utility.drop_alias(f"{p}_alias")
    simple = lambda: CollectionSchema([
        FieldSchema("id", DataType.INT64, is_primary=True),
        FieldSchema("v", DataType.FLOAT_VECTOR, dim=4),
        FieldSchema("s", DataType.VARCHAR, max_length=32)])
    # 1. empty, no index, not loaded
    _fresh(f"{p}_empty", simple())
    # 2. indexed, rows, not loaded
    c = _fresh(f"{p}_unloaded", simple())
    c.insert([list(range(1, 301)), [_vec(i, 4) for i in range(1, 301)], [f"u{i}" for i in range(1, 301)]])
    c.flush()
    c.create_index("v", {"index_type": "IVF_FLAT", "metric_type": "L2", "params": {"nlist": 8}}, index_name="v_ivf")
    # 3. rows, no index, not loaded (Milvus 2.3 cannot load or query it)
    c = _fresh(f"{p}_noindex", simple())
    c.insert([list(range(10, 60)), [_vec(i, 4) for i in range(10, 60)], [f"n{i}" for i in range(10, 60)]])
    c.insert([list(range(60, 70)), [_vec(i, 4) for i in range(60, 70)], [f"n{i}" for i in range(60, 70)]])
    # 4. loaded, auto-id, partition key, dynamic fields, every scalar type, JSON, array; deletes
    s = CollectionSchema([
        FieldSchema("id", DataType.INT64, is_primary=True, auto_id=True),
        FieldSchema("tenant", DataType.VARCHAR, max_length=64, is_partition_key=True),
        FieldSchema("emb", DataType.FLOAT_VECTOR, dim=8),
        FieldSchema("b", DataType.BOOL), FieldSchema("i8", DataType.INT8),
        FieldSchema("i16", DataType.INT16), FieldSchema("i32", DataType.INT32),
        FieldSchema("f32", DataType.FLOAT), FieldSchema("f64", DataType.DOUBLE),
        FieldSchema("doc", DataType.JSON),
        FieldSchema("tags", DataType.ARRAY, element_type=DataType.VARCHAR, max_capacity=4, max_length=16),
    ], description="auto id, partition key, dynamic", enable_dynamic_field=True)
    c = _fresh(f"{p}_auto", s, num_partitions=4, consistency_level="Bounded")
    def row(i):
        r = {"tenant": ["acme", "globex", "ünï", ""][i % 4], "emb": _vec(i, 8), "b": i % 2 == 0,
             "i8": i % 127 - 60, "i16": -i, "i32": i * 1000, "f32": i / 4.0, "f64": i / 3.0,
             "doc": {"n": i, "k": ["x", None, {"y": i}]} if i % 3 else {},
             "tags": [f"t{j}" for j in range(i % 4)]}
        if i % 2:
            r["extra"] = f"dyn {i}"
        if i % 5 == 0:
            r["score"] = i * 1.5
        return r
    c.insert([row(i) for i in range(0, 250)])
    c.flush()
    c.insert([row(i) for i in range(250, 400)])
    c.create_index("emb", {"index_type": "HNSW", "metric_type": "IP", "params": {"M": 8, "efConstruction": 32}}, index_name="emb_hnsw")
    c.create_index("i32", {"index_type": "STL_SORT"}, index_name="i32_sort")
    c.load()
    ids = sorted(r["id"] for r in c.query("id > 0", output_fields=["id"], limit=16384))
    c.delete(f"id in {ids[:7]}")        # flushed with the first segment's delta log
    c.flush()
    c.delete(f"id in {ids[200:203]}")   # not yet flushed: the backup's flush must catch it
    utility.create_alias(f"{p}_auto", f"{p}_alias")
    # 5. binary vector, varchar key, an extra partition, loaded
    s = CollectionSchema([
        FieldSchema("key", DataType.VARCHAR, is_primary=True, max_length=64),
        FieldSchema("bits", DataType.BINARY_VECTOR, dim=32),
        FieldSchema("n", DataType.INT64)])
    c = _fresh(f"{p}_bin", s)
    Partition(c, "p1")
    c.insert([[f"k{i}" for i in range(100)], [_bits(i, 32) for i in range(100)], list(range(100))])
    c.insert([[f"q\"{i}" for i in range(40)], [_bits(i + 7, 32) for i in range(40)], list(range(40))], partition_name="p1")
    c.create_index("bits", {"index_type": "BIN_FLAT", "metric_type": "HAMMING", "params": {}}, index_name="bits_flat")
    c.load()

NAMES = ["empty", "unloaded", "noindex", "auto", "bin"]

def load_states(p):
    print(json.dumps({n: str(utility.load_state(f"{p}_{n}")) for n in NAMES}, sort_keys=True))

def _norm(v):
    if hasattr(v, "tolist"):  # numpy scalars and arrays
        v = v.tolist()
    if isinstance(v, float):
        return round(v, 5)
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list):
        return [_norm(x) for x in v]
    if isinstance(v, dict):
        return {k: _norm(x) for k, x in v.items()}
    return v

def _rows(c, pk, part=None):
    # every entity with every field (dynamic ones under their own names)
    expr = f"{pk} > -9223372036854775807" if pk != "key" else 'key >= ""'
    res = c.query(expr, output_fields=["*"], partition_names=part, limit=16384)
    return sorted((_norm(dict(r)) for r in res), key=lambda r: str(r[pk]))

def dump(p):
    out = {}
    for n in NAMES:
        name = f"{p}_{n}"
        c = Collection(name)
        s = c.schema
        d = {"fields": [(f.name, str(f.dtype), f.is_primary, f.auto_id, f.is_partition_key,
                         sorted((k, str(v)) for k, v in f.params.items())) for f in s.fields],
             "auto_id": s.auto_id, "dynamic": s.enable_dynamic_field, "desc": s.description,
             "partitions": sorted(p_.name for p_ in c.partitions),
             "indexes": sorted((i.field_name, i.index_name, json.dumps(i.params, sort_keys=True)) for i in c.indexes),
             "aliases": sorted(utility.list_aliases(name)),
             "load_state": str(utility.load_state(name)),
             "consistency": c.describe().get("consistency_level"),
             "shards": c.describe().get("num_shards")}
        # Read every entity; a collection that is not loaded is loaded for it (with a
        # temporary index where it has none) and put back as it was.
        loaded = "Loaded" in d["load_state"]
        tmp = False
        if not loaded:
            if not c.has_index():
                c.create_index("v", {"index_type": "FLAT", "metric_type": "L2", "params": {}}, index_name="tmp_dump")
                tmp = True
            c.load()
        pk = s.primary_field.name
        rows = _rows(c, pk)
        d["rows"] = len(rows)
        keyed = [f.name for f in s.fields if f.is_partition_key]
        if keyed:
            # A query on the partition key only searches the partition the key hashes to:
            # finding every row by its key shows each is in the right partition.
            k = keyed[0]
            d["per_key"] = {t: len(c.query(f"{k} == {json.dumps(t)}", output_fields=[pk], limit=16384))
                            for t in sorted({r[k] for r in rows})}
        else:
            d["per_partition"] = {p_.name: len(_rows(c, pk, [p_.name])) for p_ in c.partitions}
        d["sha"] = hashlib.sha256(json.dumps(rows, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
        d["keys"] = hashlib.sha256(json.dumps([r[pk] for r in rows]).encode()).hexdigest()
        if not loaded:
            c.release()
            if tmp:
                c.drop_index(index_name="tmp_dump")
        out[n] = d
    print(json.dumps(out, sort_keys=True, ensure_ascii=False, indent=1))

def drop_all(p):
    for n in NAMES:
        name = f"{p}_{n}"
        if utility.has_collection(name):
            for a in utility.list_aliases(name):
                utility.drop_alias(a)
            utility.drop_collection(name)
