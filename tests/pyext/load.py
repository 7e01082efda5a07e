"""Loads the hakozuna-pyext cdylib (argv[1]) with ctypes -- dlopen after the interpreter
started, as Python imports an extension module -- and calls it from several Python threads
at once (ctypes releases the GIL during the call), each of which spawns Rust threads. Every
call's checksum must equal the one computed first, on the main thread. Prints "pyext ok".
"""
import ctypes
import sys
import threading

lib = ctypes.CDLL(sys.argv[1])
run = lib.hz_pyext_run
run.argtypes = [ctypes.c_uint64, ctypes.c_uint64, ctypes.c_uint32]
run.restype = ctypes.c_uint64

SEED, ROUNDS, THREADS = 7, 3000, 3
expected = run(SEED, ROUNDS, THREADS)
assert expected != 2**64 - 1, "block contents changed on the main thread"

results = []
lock = threading.Lock()


def worker():
    for _ in range(3):
        r = run(SEED, ROUNDS, THREADS)
        with lock:
            results.append(r)


threads = [threading.Thread(target=worker) for _ in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()

assert len(results) == 18, results
bad = [r for r in results if r != expected]
assert not bad, f"checksums differ: expected {expected}, got {bad}"
print("pyext ok", expected)
