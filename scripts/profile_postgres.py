#!/usr/bin/env python3
"""Where PostgreSQL's CPU goes while the processor writes: a perf profile of every server
process, grouped into the parts of a row's cost, with the WAL and the statements beside it.

    sudo python3 scripts/profile_postgres.py [--profile fmb|mixed] [--order O] [--count N] [--binary B]
    PGPORT=5433 sudo python3 scripts/profile_postgres.py        # the hypertable (TimescaleDB)
    perf script -i perf.data | python3 scripts/profile_postgres.py --parts   # an existing profile

Publishes --count `processor simulate` records (10,000 devices, seed 1) into a fresh stream, takes
a CHECKPOINT (as bench.py does before each run), then records `perf record -a --call-graph dwarf`
of the whole machine while the processor (with bench.py's environment and the service's defaults)
writes them into a fresh schema, until every entry is acknowledged. Prints:

- each part's share of the PostgreSQL processes' samples and its CPU per row. A sample counts
  under the part of the first frame, from the leaf up, that names one (so `palloc` or `memcpy`
  count under whoever called them, and the WAL record a heap insertion writes counts as WAL);
  the server's background processes (walwriter, checkpointer, ...) count as their own part;
- `pg_stat_wal` over the run, per row (records, full-page images, bytes, writes, syncs; a
  backend reports its WAL when it goes idle, so the last second of the run may be missing);
- `pg_stat_statements` for the run's statements, when the extension is loaded
  (`shared_preload_libraries`): calls, rows, time and WAL bytes per row;
- each table's inserted, updated (of them heap-only) and deleted rows (`pg_stat_user_tables`).

PostgreSQL's Debian build keeps only its dynamic symbols: a static function shows as its nearest
exported caller, which is what the parts are named after. Needs root (or perf_event_paranoid -1),
perf (Debian's linux-perf) and what bench.py needs.
"""
import argparse
import collections
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

import bench
from profile_parts import samples

# (part, pattern over a frame's symbol); from the leaf up, the first frame that matches decides.
PARTS = [
    ("WAL: building and inserting records (XLogInsert, CRC)",
     r"^(XLogInsert|XLogRecordAssemble|XLogRegister|XLogBeginInsert|CopyXLogRecordToWAL|"
     r"ReserveXLog|WALInsertLock|pg_comp_crc32c|log_heap_new_cid|XLogSaveBufferForHint)"),
    ("commit: WAL write and flush (XLogFlush, fdatasync)",
     r"^(XLogFlush|XLogWrite|issue_xlog_fsync|RecordTransactionCommit|CommitTransaction|"
     r"XLogBackgroundFlush|pg_fdatasync|__x64_sys_fdatasync|do_fsync)"),
    ("jsonb input (parsing, numeric, key sort, encoding)",
     r"^(jsonb_|pg_parse_json|json_lex|pushJsonbValue|convertJsonb|JsonbValue|"
     r"uniqueifyJsonb|numeric_in|makeJsonLexContext|pg_mb|pg_verify|pg_encoding_verifymbstr|"
     r"pg_utf8)"),
    ("btree: key comparisons (text collation, timestamps)",
     r"^(varstr_cmp|bttextcmp|strcoll|__strcoll|texteq|timestamp_cmp|btint8cmp|"
     r"FunctionCall2Coll|_bt_compare)"),
    ("btree: insertion (search, page split, unique check)",
     r"^(_bt_|btinsert|index_insert|ExecInsertIndexTuples|index_form_tuple|"
     r"ExecCheckIndexConstraints)"),
    ("heap: insertion (tuple forming, buffer, page)",
     r"^(heap_insert|heap_multi_insert|heap_prepare_insert|heap_fill_tuple|heap_form_tuple|"
     r"heap_compute_data_size|RelationGetBufferForTuple|RelationPutHeapTuple|"
     r"heapam_tuple_insert|table_multi_insert|ReadBufferBI|ExecMaterializeSlot|tts_|"
     r"PageAddItem|toast_)"),
    ("buffers: reading and extending pages (shared buffers, smgr)",
     r"^(ReadBuffer|ReadBufferExtended|BufferAlloc|StrategyGetBuffer|LockBuffer|"
     r"MarkBufferDirty|smgr|md|mdextend|FlushBuffer|UnpinBuffer|PinBuffer|LWLock)"),
    ("TimescaleDB: chunk routing (dispatch, chunk lookup, tuple conversion)",
     r"^(ts_chunk_dispatch|ts_chunk_insert_state|ts_hypertable|ts_hypercube|ts_dimension|"
     r"ts_subspace_store|ts_chunk_|ts_cache|ts_point|chunk_dispatch|ts_hyperspace|"
     r"execute_attr_map_slot)"),
    ("duplicate fallback (INSERT ... ON CONFLICT, unnest)",
     r"^(ExecOnConflict|ExecCheckTIDVisible|array_unnest|ExecInsert|ExecModifyTable)"),
    ("COPY: receiving and decoding rows (socket, binary recv functions, defaults)",
     r"^(CopyFrom|NextCopyFrom|CopyReadBinary|CopyGetData|CopyLoad|ReceiveCopy|"
     r"ReceiveFunctionCall|textrecv|timestamptz_recv|float8recv|float4recv|int2recv|int4recv|"
     r"pq_|secure_read|pqsecure|ProcessCopy|copyfrom|ts_copy|CopyMulti|ExecEvalExpr|now|"
     r"ExecConstraints|ExecStoreVirtual)"),
    ("statements: parse, plan, execute the rest (offsets, BEGIN/COMMIT)",
     r"^(exec_|PostgresMain|pg_plan|pg_analyze|raw_parser|standard_|ProcessUtility|"
     r"PortalRun|ExecutorStart|ExecInitNode|ExecutePlan)"),
]

# background processes, by pg_stat_activity's backend_type
BACKGROUND = "server background processes ({})"
ACROSS = [
    ("the allocator (palloc, AllocSet, MemoryContext)",
     r"^(palloc|pfree|AllocSet|MemoryContext|repalloc|GenerationAlloc|SlabAlloc)"),
    ("copies (memcpy, memmove)", r"memcpy|memmove"),
]


def symbol_of(frame):
    """`name+0x12 (/path/lib.so)` -> `name`."""
    return re.sub(r"\+0x[0-9a-f]+$", "", frame.split(" (", 1)[0])


def parts_of(lines, background):
    """Counts the PostgreSQL processes' samples per part; `background` maps pid -> backend
    type for the server's own processes."""
    parts = [(name, re.compile(pattern)) for name, pattern in PARTS]
    across = [(name, re.compile(pattern)) for name, pattern in ACROSS]
    counts = collections.Counter()
    across_counts = collections.Counter()
    kernel = total = 0
    for head, frames in samples(lines):
        fields = head.split()
        if not fields or fields[0] != "postgres" or not frames:
            continue
        pid = fields[1].split("/")[0]
        total += 1
        if "[kernel.kallsyms]" in frames[0]:
            kernel += 1
        leaf = symbol_of(frames[0])
        for name, pattern in across:
            if pattern.search(leaf):
                across_counts[name] += 1
                break
        if pid in background:
            counts[BACKGROUND.format(background[pid])] += 1
            continue
        for frame in frames:
            symbol = symbol_of(frame)
            found = next((name for name, pattern in parts if pattern.search(symbol)), None)
            if found:
                counts[found] += 1
                break
        else:
            counts["other (unnamed frames, the kernel outside the parts)"] += 1
    return counts, across_counts, kernel, total


def report(counts, across_counts, kernel, total, us_per_row=None):
    if total == 0:
        sys.exit("profile_postgres: no samples of PostgreSQL processes")
    print(f"| part | share | µs per row |" if us_per_row else "| part | share |")
    print("|---|---|---|" if us_per_row else "|---|---|")
    for name, count in counts.most_common():
        share = count / total
        if us_per_row:
            print(f"| {name} | {share:.0%} | {share * us_per_row:.2f} |")
        else:
            print(f"| {name} | {share:.0%} |")
    print()
    print(f"{total} samples of PostgreSQL processes; across the parts: "
          + ", ".join(f"{name} {count / total:.0%}" for name, count in across_counts.items())
          + f", the kernel {kernel / total:.0%}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", action="store_true",
                        help="read `perf script` output on stdin and print the parts only")
    parser.add_argument("--binary", default=bench.BIN, help="the processor to run")
    parser.add_argument("--profile", default="fmb", choices=["fmb", "mixed"])
    parser.add_argument("--order", default="in-order", choices=["in-order", "newest-first", "late"],
                        help="the records' arrival order (simulate --order)")
    parser.add_argument("--count", type=int, default=300000)
    parser.add_argument("--devices", type=int, default=10000)
    parser.add_argument("--frequency", type=int, default=499, help="samples per second per CPU")
    parser.add_argument("--out", help="keep perf.data here (default: a temporary folder)")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the processor")
    args = parser.parse_args()
    if args.parts:
        report(*parts_of(sys.stdin, {}))
        return

    out = args.out or tempfile.mkdtemp()
    os.makedirs(out, exist_ok=True)
    stream, schema = bench.fresh("pgprof")
    try:
        published = bench.simulate(stream, count=args.count, devices=args.devices, profile=args.profile,
                                   order=args.order)
        want = published["valid_distinct"]
        statements = bench.has_extension("pg_stat_statements")
        bench.psql("CHECKPOINT")
        if statements:
            bench.psql("SELECT pg_stat_statements_reset()")
        wal_before = bench.wal_stats()
        cpu_before = bench.server_cpu()["postgres"]
        data = os.path.join(out, "perf.data")
        perf = subprocess.Popen(["perf", "record", "-a", "-F", str(args.frequency), "--call-graph",
                                 "dwarf,16384", "-o", data], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(1)
        timing = tempfile.mktemp()
        extra = dict(pair.split("=", 1) for pair in args.env)
        extra["BIN"] = args.binary
        started = time.time()
        proc, port = bench.start_service(stream, schema, None, timing, variant=extra)
        time.sleep(0.5)
        background = dict(line.split("|", 1) for line in bench.psql(
            "SELECT pid, backend_type FROM pg_stat_activity "
            "WHERE backend_type <> 'client backend'").splitlines() if "|" in line)
        landed = {}

        def end_profile():
            # at the last acknowledgement, before the check's count(*)
            landed["cpu"] = bench.server_cpu()["postgres"] - cpu_before
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=300)

        ended = bench.wait_landed(stream, schema, [port], published["published"], want, 1200,
                                  on_landed=end_profile)
        seconds, cpu = ended - started, landed["cpu"]
        wal_after = bench.wal_stats()
        bench.stop_service(proc, timing)
        rows_sql = None
        if statements:
            rows_sql = bench.psql(
                "SELECT calls, rows, round(total_exec_time::numeric, 1), wal_bytes, "
                "regexp_replace(left(query, 70), '\\s+', ' ', 'g') FROM pg_stat_statements "
                "WHERE calls > 0 ORDER BY total_exec_time DESC LIMIT 8")
        tables_sql = bench.psql(
            "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del FROM pg_stat_user_tables "
            f"WHERE schemaname = '{schema}' ORDER BY relname")
    finally:
        bench.drop(stream, schema)

    us_per_row = cpu / want * 1e6
    print(f"{want} rows in {seconds:.1f} s; PostgreSQL CPU {us_per_row:.2f} µs per row")
    # only the server's samples, unwound without inline frames (the slow part of perf script)
    script = subprocess.run(["perf", "script", "-i", data, "--comm", "postgres", "--no-inline",
                             "-F", "comm,pid,tid,ip,sym,dso"],
                            capture_output=True, text=True, errors="replace")
    report(*parts_of(script.stdout.splitlines(), background), us_per_row=us_per_row)
    names = ["records", "full-page images", "bytes", "writes", "syncs"]
    print("\npg_stat_wal per row: " + ", ".join(
        f"{name} {(wal_after[column] - wal_before[column]) / want:.3f}"
        for name, column in zip(names, bench.WAL_COLUMNS)))
    if rows_sql is not None:
        print("\n| calls | rows | ms | WAL bytes per row | statement |\n|---|---|---|---|---|")
        for line in rows_sql.splitlines():
            calls, rows, ms, wal_bytes, query = line.split("|", 4)
            print(f"| {calls} | {rows} | {ms} | {float(wal_bytes) / want:.1f} | `{query}` |")
    print("\n| table | inserted | updated | of them heap-only | deleted |\n|---|---|---|---|---|")
    for line in tables_sql.splitlines():
        print("| " + " | ".join(line.split("|")) + " |")
    if not args.out:
        print(f"\n(perf.data kept in {out})")


if __name__ == "__main__":
    main()
