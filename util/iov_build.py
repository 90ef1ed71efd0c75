"""cffi builder (API mode) of util._iov_c, the C helper of util/iov.py.

setup.py hooks it in with ``cffi_modules=["util/iov_build.py:ffibuilder"]``,
so ``pip install`` compiles it.  To build it in place for development::

    cd /work/main && python3 util/iov_build.py
"""
import os

from cffi import FFI

_HERE = os.path.dirname(os.path.abspath(__file__))

ffibuilder = FFI()

# Keep in step with util/iov_helper.c.
ffibuilder.cdef("""
    size_t iov_to_buf(char **base, size_t *len, unsigned int cnt,
                      size_t offset, char *buf, size_t buflen, size_t bytes);
    size_t iov_from_buf(char **base, size_t *len, unsigned int cnt,
                        size_t offset, char *buf, size_t buflen, size_t bytes);
    size_t iov_memset(char **base, size_t *len, unsigned int cnt,
                      size_t offset, int fillc, size_t bytes);
    int buffer_is_zero(char *buf, size_t len);
    int iov_is_zero(char **base, size_t *len, unsigned int cnt);
    ssize_t iov_compare(char **abase, size_t *alen,
                        char **bbase, size_t *blen, unsigned int cnt);
    void *qemu_try_memalign(size_t alignment, size_t size);
    void qemu_vfree(void *ptr);
""")

# The source text is read here (not named in sources=) so that the build
# works from any directory and from pip's isolated build alike.
with open(os.path.join(_HERE, "iov_helper.c")) as _f:
    # -O3: the zero test relies on the loop being vectorised.
    ffibuilder.set_source("util._iov_c", _f.read(),
                          extra_compile_args=["-O3"])

if __name__ == "__main__":
    # Writes util/_iov_c.*.so next to this file; the generated C goes there
    # too (util/_iov_c.c, ignored by git).
    ffibuilder.compile(tmpdir=os.path.dirname(_HERE), verbose=False)
