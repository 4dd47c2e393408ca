"""Host (CPU) memory of this process: peak resident size, and handing freed heap pages back to the OS."""
import ctypes
import ctypes.util
import functools
import resource


def peak_gb() -> float:
    """Peak resident set size of this process in GB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    lib = ctypes.CDLL(name) if name else None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None


def release_freed() -> bool:
    """Return the heap pages glibc keeps after large frees (initialisation and compilation temporaries) to the OS,
    so that the train step's own temporaries don't stack on them in the process's peak. False without glibc."""
    lib = _libc()
    return bool(lib and lib.malloc_trim(0))
