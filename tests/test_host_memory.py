"""host_memory: peak RSS, and freed heap pages handed back to the OS."""
import os
import sys

import pytest

from clipjax import host_memory


def resident_bytes() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc_trim and /proc are Linux's")
def test_release_freed_returns_fragmented_heap_pages():
    blocks = [bytearray(64 * 1024) for _ in range(4000)]  # ~256 MB of heap blocks, below the mmap threshold
    keep = blocks[::50]  # survivors pin the heap's top, so free() alone cannot shrink it
    del blocks
    before = resident_bytes()
    assert host_memory.release_freed()
    after = resident_bytes()
    assert before - after > 100e6, (before, after)
    assert host_memory.peak_gb() * 1e9 > after  # the kernel updates the recorded peak lazily: compare below it
    del keep
