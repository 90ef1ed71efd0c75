/*
 * Byte work for util/iov.py, compiled by util/iov_build.py (cffi, API mode).
 *
 * The loops follow QEMU's util/iov.c (iov_from_buf, iov_to_buf, iov_memset,
 * qemu_iovec_is_zero, qemu_iovec_compare) and buffer_is_zero of
 * util/cutils.c.  An iovec arrives as two parallel arrays, base pointers and
 * lengths, because util.iov fills them with cffi slice assignments, which is
 * much cheaper from Python than setting struct fields one by one.
 *
 * QEMU asserts where the caller got the arguments wrong; here an assert would
 * kill the Python process, so those cases return a sentinel instead and
 * util.iov raises AssertionError.  The buffer length is passed too, so that a
 * wrong byte count can never write outside a Python object.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

/* Sentinels of the copy functions (no real copy can be this long). */
#define IOV_ERR_OFFSET ((size_t)-1)     /* offset past the end of the vector */
#define IOV_ERR_BUFFER ((size_t)-2)     /* the flat buffer is too small */

/* iov_to_buf (to_buf != 0) and iov_from_buf share one walk. */
static size_t iov_copy_buf(char *const *base, const size_t *len,
                           unsigned int cnt, size_t offset,
                           char *buf, size_t buflen, size_t bytes, int to_buf)
{
    size_t done = 0;
    unsigned int i;

    for (i = 0; (offset || done < bytes) && i < cnt; i++) {
        if (offset < len[i]) {
            size_t n = len[i] - offset;
            if (n > bytes - done) {
                n = bytes - done;
            }
            if (n > buflen - done) {
                return IOV_ERR_BUFFER;
            }
            if (to_buf) {
                memcpy(buf + done, base[i] + offset, n);
            } else {
                memcpy(base[i] + offset, buf + done, n);
            }
            done += n;
            offset = 0;
        } else {
            offset -= len[i];
        }
    }
    return offset ? IOV_ERR_OFFSET : done;
}

size_t iov_to_buf(char *const *base, const size_t *len, unsigned int cnt,
                  size_t offset, char *buf, size_t buflen, size_t bytes)
{
    return iov_copy_buf(base, len, cnt, offset, buf, buflen, bytes, 1);
}

size_t iov_from_buf(char *const *base, const size_t *len, unsigned int cnt,
                    size_t offset, char *buf, size_t buflen, size_t bytes)
{
    return iov_copy_buf(base, len, cnt, offset, buf, buflen, bytes, 0);
}

size_t iov_memset(char *const *base, const size_t *len, unsigned int cnt,
                  size_t offset, int fillc, size_t bytes)
{
    size_t done = 0;
    unsigned int i;

    for (i = 0; (offset || done < bytes) && i < cnt; i++) {
        if (offset < len[i]) {
            size_t n = len[i] - offset;
            if (n > bytes - done) {
                n = bytes - done;
            }
            memset(base[i] + offset, fillc, n);
            done += n;
            offset = 0;
        } else {
            offset -= len[i];
        }
    }
    return offset ? IOV_ERR_OFFSET : done;
}

/* Any length and alignment (QEMU 2.5 wants a multiple of 32 bytes). */
int buffer_is_zero(const char *buf, size_t len)
{
    const unsigned char *p = (const unsigned char *)buf;

    while (len && ((uintptr_t)p & 15)) {
        if (*p++) {
            return 0;
        }
        len--;
    }
    /*
     * OR 256 bytes together before testing: a loop without an early exit
     * is one that the compiler turns into vector instructions.
     */
    for (; len >= 256; p += 256, len -= 256) {
        uint64_t w[32], acc = 0;
        int k;

        memcpy(w, p, sizeof(w));    /* plain loads, no aliasing trouble */
        for (k = 0; k < 32; k++) {
            acc |= w[k];
        }
        if (acc) {
            return 0;
        }
    }
    while (len--) {
        if (*p++) {
            return 0;
        }
    }
    return 1;
}

int iov_is_zero(char *const *base, const size_t *len, unsigned int cnt)
{
    unsigned int i;

    for (i = 0; i < cnt; i++) {
        if (!buffer_is_zero(base[i], len[i])) {
            return 0;
        }
    }
    return 1;
}

/*
 * qemu_iovec_compare: offset of the first differing byte, -1 when equal,
 * -2 when an entry's lengths differ (QEMU asserts, at the same point).
 */
ssize_t iov_compare(char *const *abase, const size_t *alen,
                    char *const *bbase, const size_t *blen, unsigned int cnt)
{
    size_t offset = 0;
    unsigned int i;

    for (i = 0; i < cnt; i++) {
        const char *p = abase[i], *q = bbase[i];
        size_t n = alen[i], k = 0;

        if (n != blen[i]) {
            return -2;
        }
        if (memcmp(p, q, n) != 0) {
            /* memcmp only says that they differ; find where. */
            while (p[k] == q[k]) {
                k++;
            }
            return offset + k;
        }
        offset += n;
    }
    return -1;
}

/* As in util/oslib-posix.c: NULL on failure, never NULL for size 0. */
void *qemu_try_memalign(size_t alignment, size_t size)
{
    void *ptr;

    if (alignment < sizeof(void *)) {
        alignment = sizeof(void *);
    }
    if (posix_memalign(&ptr, alignment, size ? size : 1)) {
        return NULL;
    }
    return ptr;
}

void qemu_vfree(void *ptr)
{
    free(ptr);
}
