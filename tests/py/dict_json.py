"""The Python program of issue 19: a 300,000-entry dict, dumped to JSON and loaded back, then
200,000 `bytes` objects of 1-3,000 bytes. Run with PYTHONMALLOC=malloc (so every object goes
through malloc) under LD_PRELOAD of the allocator to compare. Prints the wall time of the work
and the process's peak RSS.

Sizes just above 2 KiB are where whole-page medium classes wasted up to half a block: about a
third of the bytes objects (2,049-3,000 bytes with their header) took 4,096 bytes each."""
import json
import random
import resource
import time

t0 = time.perf_counter()
r = random.Random(19)
d = {
    f"key-{i:07d}": {"id": i, "name": "n" * r.randint(1, 40), "tags": [i % 7, i % 11, str(i)]}
    for i in range(300_000)
}
s = json.dumps(d)
d2 = json.loads(s)
assert len(d2) == len(d)
blobs = [bytes(r.randint(1, 3000)) for _ in range(200_000)]
total = sum(len(b) for b in blobs)
wall = time.perf_counter() - t0
print(f"wall_s {wall:.3f} peak_rss_mib {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.1f} blob_bytes {total}")
