#!/usr/bin/env python3
"""Where the processor's CPU goes, by part of the pipeline, from a perf profile with call chains.

    perf record -F 1999 --call-graph dwarf -o perf.data target/release/processor   # under load
    perf script -i perf.data | python3 scripts/profile_parts.py

Each sample is counted under the first part in PARTS whose pattern matches any frame of its call
chain (so the order matters: COPY encoding is inside the write task, the attributes inside the
decode). Samples of other processes are left out. Prints each part's share of the samples, then
the shares of the allocator, of copies and of the kernel across all parts. Python 3's standard
library only.
"""
import re
import sys

# (part, pattern over one frame's symbol), first match wins.
PARTS = [
    ("decode: the attributes object (validated, copied as written)",
     r"codec::attributes::"),
    ("decode: the fixed fields (numbers, the ISO timestamp, the UTF-8 check, the `Position`)",
     r"codec::decode_entry|codec::fields::|codec::timestamp::"),
    ("COPY encoding", r"postgres::copy::encode_row"),
    ("the write task: tokio-postgres, the transaction, socket writes",
     r"RowSink|tokio_postgres|postgres_protocol|postgres::connect::|postgres::writer::"),
    ("acknowledgement (the script that acknowledges and reads the resume point)",
     r"acker::ack_loop"),
    ("reading `XREADGROUP` replies: socket reads and the RESP reader slicing entries",
     r"source::read_loop|read_connection::|redis::resp::"),
    ("state fold (LRU), device_latest bookkeeping, active devices",
     r"operators::fold_state|FoldState|state::StateTable|lru::|active::ActiveDevices"),
    ("timely: scheduling, channels, the exchange by device, progress", r"timely"),
    ("tokio's runtime and the rest", r"."),
]
ACROSS = [
    ("the allocator (mimalloc)", r"^_?mi_|mimalloc|__rust_alloc|__rust_dealloc|__rust_realloc"),
    ("copies (memmove, memcpy)", r"memmove|memcpy"),
]


def samples(lines):
    """Yields (header line, [frame symbols, leaf first]) per sample of `perf script` (the header
    starts with the command, then the pid/tid)."""
    head, frames = None, []
    for line in lines:
        if not line.strip():
            if head is not None:
                yield head, frames
            head, frames = None, []
        elif head is None:
            head = line
        else:
            parts = line.strip().split(None, 1)
            if len(parts) == 2:
                frames.append(parts[1])
    if head is not None:
        yield head, frames


def main():
    parts = [(name, re.compile(pattern)) for name, pattern in PARTS]
    across = [(name, re.compile(pattern)) for name, pattern in ACROSS]
    counts = {name: 0 for name, _ in parts}
    across_counts = {name: 0 for name, _ in across}
    kernel = total = 0
    for head, frames in samples(sys.stdin):
        command = head.split()[0] if head.split() else ""
        if not (command.startswith("timely") or command.startswith("processor")):
            continue
        if not frames:
            continue
        total += 1
        leaf = frames[0]
        if "[kernel.kallsyms]" in leaf:
            kernel += 1
        symbol = leaf.split(" (", 1)[0]
        for name, pattern in across:
            if pattern.search(symbol):
                across_counts[name] += 1
                break
        for name, pattern in parts:
            if any(pattern.search(frame) for frame in frames):
                counts[name] += 1
                break
    if total == 0:
        sys.exit("profile_parts: no samples of the processor in the input")
    print(f"{total} samples of the processor")
    print("| part | share of the processor's CPU |")
    print("|---|---|")
    for name, _ in parts:
        print(f"| {name} | {100 * counts[name] / total:.0f}% |")
    shares = [f"{name} {100 * count / total:.0f}%" for name, count in across_counts.items()]
    shares.append(f"the kernel {100 * kernel / total:.0f}%")
    print("Across these: " + ", ".join(shares) + ".")


if __name__ == "__main__":
    main()
