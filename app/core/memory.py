"""How the C allocator (glibc's malloc) treats this process's memory.

Each argon2id hash allocates its whole memory cost (19 MiB by default). glibc raises
its mmap threshold once such a block is freed, so from then on those blocks would
come from a heap and stay resident, about 20 MiB per hashing thread. A fixed
threshold of 1 MiB, which also turns that adjustment off, sends them back to the
system when they are freed. Elsewhere than glibc nothing changes.
"""

from __future__ import annotations

import ctypes
import functools

_M_MMAP_THRESHOLD = -3


@functools.cache
def tune_allocator() -> bool:
    """Apply the setting once per process; True when the allocator took it."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 1 << 20))
