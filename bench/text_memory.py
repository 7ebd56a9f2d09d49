"""Peak memory of turning a text file into token ids: bptt's reader + compact char ids
(bptt.textcodes) against the Vocabulary path through Python lists (bptt.data), each in its own
process (peak RSS is per process), on the same generated text.

    python bench/text_memory.py --mib 100

Prints one line per path: peak RSS (MiB), seconds, the ids' dtype, and the ratio of peak RSS to
the file's size. Repeats with --repeat and reports medians. Memory, not speed: threads and BLAS
do not matter here (no BLAS call is made).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import resource, sys, time
path, how = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
if how == "compact":
    from bptt.io.files import read_text_file
    from bptt.textcodes import build_char_vocabulary, encode_compact
    text = read_text_file(path)
    vocab = build_char_vocabulary(text)
    ids = encode_compact(vocab, text)
else:
    from bptt.data import Vocabulary
    text = open(path, encoding="utf-8").read()
    vocab = Vocabulary.build(text, "char")
    ids = vocab.encode(text)
seconds = time.perf_counter() - t0
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, seconds, ids.dtype)
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=100, help="size of the generated text")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    here = os.path.dirname(os.path.abspath(__file__))
    seed = open(os.path.join(here, "..", "README.md"), encoding="utf-8").read()
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "text.txt")
        with open(path, "w", encoding="utf-8") as f:
            while f.tell() < args.mib * 2**20:
                f.write(seed)
        size = os.path.getsize(path) / 2**20
        results = {"compact": [], "lists": []}
        for _ in range(args.repeat):
            for how in results:                                   # interleaved
                out = subprocess.run([sys.executable, "-c", CHILD, path, how], capture_output=True, text=True,
                                     check=True).stdout.split()
                results[how].append((float(out[0]), float(out[1]), out[2]))
        for how, rows in results.items():
            rss = statistics.median(r[0] for r in rows)
            seconds = statistics.median(r[1] for r in rows)
            print(f"{how:8s} text {size:,.0f} MiB: peak RSS {rss:,.0f} MiB ({rss / size:.1f}x the file), "
                  f"{seconds:.1f} s, ids {rows[0][2]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
