/*
 * Worker threads for the file driver's reads and writes, in C: the part of
 * util/thread_pool.py that must not wait for the GIL.
 *
 * A Python worker needs the GIL to take a request and again to hand its
 * result back; while the event loop runs the completion of another request
 * it holds the GIL, so the worker's next preadv() starts late and its
 * result reaches the loop late.  These workers are pthreads that never touch
 * a Python object: the request carries a struct iovec array over buffers
 * pinned (Py_buffer) by the submitter, the worker runs preadv()/pwritev()
 * as handle_aiocb_rw_vector() and aio_worker() do, queues the result and
 * writes an eventfd that the pool's AioContext polls.  Everything with
 * Python objects (submit, take_done, cancel) runs in the context's thread
 * with the GIL held.
 *
 * Threads are managed as thread-pool.c manages them: one is started when a
 * request finds no idle worker (up to max_threads), and a worker that has
 * had nothing to do for 10 s exits.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define IDLE_TIMEOUT_S 10

typedef struct Request {
    struct Request *next;
    PyObject *elem;             /* the ThreadPoolElement; GIL only */
    Py_buffer *views;           /* pinned buffers; GIL only */
    struct iovec *iov;
    int niov;
    int fd;
    int is_write;
    int64_t offset;
    int64_t nbytes;
    int64_t ret;
} Request;

typedef struct {
    PyObject_HEAD
    pthread_mutex_t lock;
    pthread_cond_t work;        /* a request was queued, or stopping */
    pthread_cond_t stopped;     /* a worker exited */
    Request *queue_head, *queue_tail;
    Request *done_head, *done_tail;
    int cur_threads;
    int idle_threads;
    int max_threads;
    int stopping;
    int efd;
} ThreadPoolC;

static void queue_append(Request **head, Request **tail, Request *req)
{
    req->next = NULL;
    if (*tail) {
        (*tail)->next = req;
    } else {
        *head = req;
    }
    *tail = req;
}

/* handle_aiocb_rw_vector + the READ/WRITE cases of aio_worker */
static int64_t run_request(Request *req)
{
    struct iovec *iov = req->iov;
    int niov = req->niov;
    int64_t done = 0;

    while (done < req->nbytes) {
        ssize_t n;
        if (req->is_write) {
            n = pwritev(req->fd, iov, niov, req->offset + done);
        } else {
            n = preadv(req->fd, iov, niov, req->offset + done);
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -errno;
        }
        if (n == 0) {
            break;
        }
        done += n;
        /* a short transfer: go on with the rest of the vector */
        while (niov > 0 && (size_t)n >= iov->iov_len) {
            n -= iov->iov_len;
            iov++;
            niov--;
        }
        if (niov > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= n;
        }
    }
    if (req->is_write) {
        return done == req->nbytes ? 0 : -EINVAL;
    }
    if (done < req->nbytes) {
        /* the end of the file: the rest reads as zeroes */
        while (niov > 0) {
            memset(iov->iov_base, 0, iov->iov_len);
            iov++;
            niov--;
        }
    }
    return 0;
}

static void *worker_thread(void *opaque)
{
    ThreadPoolC *pool = opaque;
    static const uint64_t one = 1;

    pthread_mutex_lock(&pool->lock);
    while (!pool->stopping) {
        Request *req;

        if (!pool->queue_head) {
            struct timespec ts;
            int rc;

            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += IDLE_TIMEOUT_S;
            pool->idle_threads++;
            rc = pthread_cond_timedwait(&pool->work, &pool->lock, &ts);
            pool->idle_threads--;
            if (rc == ETIMEDOUT && !pool->queue_head) {
                break;
            }
            continue;
        }
        req = pool->queue_head;
        pool->queue_head = req->next;
        if (!pool->queue_head) {
            pool->queue_tail = NULL;
        }
        pthread_mutex_unlock(&pool->lock);

        req->ret = run_request(req);

        pthread_mutex_lock(&pool->lock);
        queue_append(&pool->done_head, &pool->done_tail, req);
        /* the eventfd only wakes the loop up: a failed write means the
         * counter is full, and the loop is woken already */
        if (write(pool->efd, &one, sizeof(one)) < 0) {
            /* nothing to do */
        }
    }
    pool->cur_threads--;
    pthread_cond_signal(&pool->stopped);
    pthread_mutex_unlock(&pool->lock);
    return NULL;
}

/* Run every queued request in the calling thread (pool->lock held, which
 * is given up around each request, as is the GIL). */
static void run_queue_here(ThreadPoolC *pool)
{
    static const uint64_t one = 1;
    Request *req;

    while ((req = pool->queue_head)) {
        pool->queue_head = req->next;
        if (!pool->queue_head) {
            pool->queue_tail = NULL;
        }
        pthread_mutex_unlock(&pool->lock);
        Py_BEGIN_ALLOW_THREADS
        req->ret = run_request(req);
        Py_END_ALLOW_THREADS
        pthread_mutex_lock(&pool->lock);
        queue_append(&pool->done_head, &pool->done_tail, req);
        if (write(pool->efd, &one, sizeof(one)) < 0) {
            /* the loop is woken already */
        }
    }
}

static void request_free(Request *req)
{
    for (int i = 0; i < req->niov; i++) {
        PyBuffer_Release(&req->views[i]);
    }
    PyMem_Free(req->views);
    PyMem_Free(req->iov);
    Py_XDECREF(req->elem);
    PyMem_Free(req);
}

static PyObject *pool_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    ThreadPoolC *pool;
    int max_threads;

    if (!PyArg_ParseTuple(args, "i", &max_threads)) {
        return NULL;
    }
    pool = (ThreadPoolC *)type->tp_alloc(type, 0);
    if (!pool) {
        return NULL;
    }
    pool->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (pool->efd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(pool);
        return NULL;
    }
    pthread_mutex_init(&pool->lock, NULL);
    pthread_cond_init(&pool->work, NULL);
    pthread_cond_init(&pool->stopped, NULL);
    pool->max_threads = max_threads;
    return (PyObject *)pool;
}

/* submit_rw(elem, fd, iov, offset, nbytes, is_write) */
static PyObject *pool_submit_rw(ThreadPoolC *pool, PyObject *args)
{
    PyObject *elem, *iov_list, *seq;
    int fd, is_write, spawn = 0;
    long long offset, nbytes;
    Request *req;
    Py_ssize_t n;

    if (!PyArg_ParseTuple(args, "OiOLLp", &elem, &fd, &iov_list, &offset,
                          &nbytes, &is_write)) {
        return NULL;
    }
    seq = PySequence_Fast(iov_list, "iov must be a sequence of buffers");
    if (!seq) {
        return NULL;
    }
    n = PySequence_Fast_GET_SIZE(seq);
    req = PyMem_Calloc(1, sizeof(*req));
    if (req) {
        req->views = PyMem_Calloc(n ? n : 1, sizeof(Py_buffer));
        req->iov = PyMem_Calloc(n ? n : 1, sizeof(struct iovec));
    }
    if (!req || !req->views || !req->iov) {
        if (req) {
            PyMem_Free(req->views);
            PyMem_Free(req->iov);
            PyMem_Free(req);
        }
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, i);
        int flags = PyBUF_SIMPLE | (is_write ? 0 : PyBUF_WRITABLE);
        if (PyObject_GetBuffer(item, &req->views[i], flags) < 0) {
            req->niov = i;
            request_free(req);
            Py_DECREF(seq);
            return NULL;
        }
        req->iov[i].iov_base = req->views[i].buf;
        req->iov[i].iov_len = req->views[i].len;
    }
    Py_DECREF(seq);
    req->niov = n;
    req->fd = fd;
    req->is_write = is_write;
    req->offset = offset;
    req->nbytes = nbytes;
    Py_INCREF(elem);
    req->elem = elem;

    pthread_mutex_lock(&pool->lock);
    if (pool->idle_threads == 0 && pool->cur_threads < pool->max_threads) {
        pool->cur_threads++;
        spawn = 1;
    }
    queue_append(&pool->queue_head, &pool->queue_tail, req);
    pthread_cond_signal(&pool->work);
    pthread_mutex_unlock(&pool->lock);

    if (spawn) {
        pthread_t thread;
        pthread_attr_t attr;
        int rc;

        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        rc = pthread_create(&thread, &attr, worker_thread, pool);
        pthread_attr_destroy(&attr);
        if (rc) {
            /* the request waits for the workers there are; with none at
             * all, the queue is run here rather than left to hang */
            pthread_mutex_lock(&pool->lock);
            pool->cur_threads--;
            if (pool->cur_threads == 0) {
                run_queue_here(pool);
            }
            pthread_mutex_unlock(&pool->lock);
        }
    }
    Py_RETURN_NONE;
}

/* take_one() -> (elem, ret) of the oldest finished request, or None */
static PyObject *pool_take_one(ThreadPoolC *pool, PyObject *unused)
{
    Request *req;
    PyObject *result;

    pthread_mutex_lock(&pool->lock);
    req = pool->done_head;
    if (req) {
        pool->done_head = req->next;
        if (!pool->done_head) {
            pool->done_tail = NULL;
        }
    }
    pthread_mutex_unlock(&pool->lock);
    if (!req) {
        Py_RETURN_NONE;
    }
    result = Py_BuildValue("(OL)", req->elem, (long long)req->ret);
    request_free(req);
    return result;
}

/* has_done() -> whether a finished request waits for take_one() */
static PyObject *pool_has_done(ThreadPoolC *pool, PyObject *unused)
{
    int ret;

    pthread_mutex_lock(&pool->lock);
    ret = pool->done_head != NULL;
    pthread_mutex_unlock(&pool->lock);
    return PyBool_FromLong(ret);
}

/* cancel(elem) -> True if the request was still queued: it is then
 * finished with -ECANCELED; a running one is left to finish */
static PyObject *pool_cancel(ThreadPoolC *pool, PyObject *elem)
{
    static const uint64_t one = 1;
    Request *req, *prev = NULL;

    pthread_mutex_lock(&pool->lock);
    for (req = pool->queue_head; req; prev = req, req = req->next) {
        if (req->elem == elem) {
            break;
        }
    }
    if (req) {
        if (prev) {
            prev->next = req->next;
        } else {
            pool->queue_head = req->next;
        }
        if (pool->queue_tail == req) {
            pool->queue_tail = prev;
        }
        req->ret = -ECANCELED;
        queue_append(&pool->done_head, &pool->done_tail, req);
        if (write(pool->efd, &one, sizeof(one)) < 0) {
            /* the loop is woken already */
        }
    }
    pthread_mutex_unlock(&pool->lock);
    return PyBool_FromLong(req != NULL);
}

static PyObject *pool_fileno(ThreadPoolC *pool, PyObject *unused)
{
    return PyLong_FromLong(pool->efd);
}

/* clear_notifier(): drain the eventfd (after poll() saw it readable) */
static PyObject *pool_clear_notifier(ThreadPoolC *pool, PyObject *unused)
{
    uint64_t value;

    if (read(pool->efd, &value, sizeof(value)) < 0 && errno != EAGAIN) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

/* close(): stop the workers and wait for them (no request may be queued
 * or running; finished ones not taken are dropped) */
static PyObject *pool_close(ThreadPoolC *pool, PyObject *unused)
{
    Request *req;

    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&pool->lock);
    pool->stopping = 1;
    pthread_cond_broadcast(&pool->work);
    while (pool->cur_threads > 0) {
        pthread_cond_wait(&pool->stopped, &pool->lock);
    }
    pthread_mutex_unlock(&pool->lock);
    Py_END_ALLOW_THREADS

    while ((req = pool->done_head)) {
        pool->done_head = req->next;
        request_free(req);
    }
    pool->done_tail = NULL;
    if (pool->efd >= 0) {
        close(pool->efd);
        pool->efd = -1;
    }
    Py_RETURN_NONE;
}

static void pool_dealloc(ThreadPoolC *pool)
{
    if (pool->efd >= 0) {
        Py_XDECREF(pool_close(pool, NULL));
    }
    pthread_mutex_destroy(&pool->lock);
    pthread_cond_destroy(&pool->work);
    pthread_cond_destroy(&pool->stopped);
    Py_TYPE(pool)->tp_free((PyObject *)pool);
}

static PyMethodDef pool_methods[] = {
    {"submit_rw", (PyCFunction)pool_submit_rw, METH_VARARGS,
     "submit_rw(elem, fd, iov, offset, nbytes, is_write)"},
    {"take_one", (PyCFunction)pool_take_one, METH_NOARGS,
     "take_one() -> (elem, ret) or None"},
    {"has_done", (PyCFunction)pool_has_done, METH_NOARGS, "has_done()"},
    {"cancel", (PyCFunction)pool_cancel, METH_O, "cancel(elem) -> bool"},
    {"fileno", (PyCFunction)pool_fileno, METH_NOARGS, "fileno()"},
    {"clear_notifier", (PyCFunction)pool_clear_notifier, METH_NOARGS,
     "clear_notifier()"},
    {"close", (PyCFunction)pool_close, METH_NOARGS, "close()"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ThreadPoolCType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "util._thread_pool_c.ThreadPoolC",
    .tp_basicsize = sizeof(ThreadPoolC),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "ThreadPoolC(max_threads): C workers for preadv/pwritev",
    .tp_new = pool_new,
    .tp_dealloc = (destructor)pool_dealloc,
    .tp_methods = pool_methods,
};

static struct PyModuleDef thread_pool_c_module = {
    PyModuleDef_HEAD_INIT, "util._thread_pool_c", NULL, -1, NULL,
};

PyMODINIT_FUNC PyInit__thread_pool_c(void)
{
    PyObject *m;

    if (PyType_Ready(&ThreadPoolCType) < 0) {
        return NULL;
    }
    m = PyModule_Create(&thread_pool_c_module);
    if (!m) {
        return NULL;
    }
    Py_INCREF(&ThreadPoolCType);
    if (PyModule_AddObject(m, "ThreadPoolC",
                           (PyObject *)&ThreadPoolCType) < 0) {
        Py_DECREF(&ThreadPoolCType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
