/*
 * The hot paths of util/coroutine.py, qemu_coroutine_create,
 * qemu_coroutine_enter and qemu_coroutine_yield, in C on greenlet's C API.
 * They do exactly what the Python versions beside them do, the coroutine
 * pool included; the slow paths (waking queued coroutines, re-raising what
 * escaped a coroutine) call back into Python.  A Python call frame costs about as much as a greenlet
 * switch, so this is what keeps enter+yield close to a raw switch pair.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include "greenlet.h"

static PyTypeObject *coroutine_type;    /* util.coroutine.Coroutine */
static Py_ssize_t caller_offset;        /* its slots */
static Py_ssize_t wakeup_offset;
static Py_ssize_t entry_offset;
static Py_ssize_t exception_offset;
static PyObject *pool;                  /* the thread-local _Pool */
static PyObject *free_name;             /* "free" */
static Py_ssize_t pool_max;             /* POOL_BATCH_SIZE * 2 */
static PyObject *terminate_marker;      /* COROUTINE_TERMINATE */
static PyObject *run_restart;           /* qemu_co_queue_run_restart(co) */
static PyObject *terminated;            /* _coroutine_terminated(co) */
static PyObject *empty_tuple;

#define SLOT(obj, offset) (*(PyObject **)((char *)(obj) + (offset)))

static int slot_offset(PyTypeObject *type, const char *name, Py_ssize_t *out)
{
    PyObject *descr = PyDict_GetItemString(type->tp_dict, name);

    if (!descr || Py_TYPE(descr) != &PyMemberDescr_Type) {
        PyErr_Format(PyExc_TypeError, "%s.%s is not a slot",
                     type->tp_name, name);
        return -1;
    }
    *out = ((PyMemberDescrObject *)descr)->d_member->offset;
    return 0;
}

static PyObject *coroutine_c_init(PyObject *module, PyObject *args)
{
    PyObject *type;

    if (!PyArg_ParseTuple(args, "O!OOOOn", &PyType_Type, &type,
                          &terminate_marker, &run_restart, &terminated,
                          &pool, &pool_max)) {
        return NULL;
    }
    coroutine_type = (PyTypeObject *)type;
    if (slot_offset(coroutine_type, "caller", &caller_offset) < 0 ||
        slot_offset(coroutine_type, "co_queue_wakeup", &wakeup_offset) < 0 ||
        slot_offset(coroutine_type, "entry", &entry_offset) < 0 ||
        slot_offset(coroutine_type, "exception", &exception_offset) < 0) {
        return NULL;
    }
    free_name = PyUnicode_InternFromString("free");
    if (!free_name) {
        return NULL;
    }
    Py_INCREF(pool);
    Py_INCREF(type);
    Py_INCREF(terminate_marker);
    Py_INCREF(run_restart);
    Py_INCREF(terminated);
    Py_RETURN_NONE;
}

/* qemu_coroutine_create: a coroutine from the thread's pool, or a new one */
static PyObject *coroutine_create(PyObject *module, PyObject *entry)
{
    PyObject *free_list = PyObject_GetAttr(pool, free_name);
    PyObject *co;
    Py_ssize_t n;

    if (!free_list) {
        return NULL;
    }
    n = PyList_GET_SIZE(free_list);
    if (n > 0) {
        co = PyList_GET_ITEM(free_list, n - 1);
        Py_INCREF(co);
        if (PyList_SetSlice(free_list, n - 1, n, NULL) < 0) {
            Py_DECREF(co);
            Py_DECREF(free_list);
            return NULL;
        }
    } else {
        co = PyObject_CallNoArgs((PyObject *)coroutine_type);
        if (!co) {
            Py_DECREF(free_list);
            return NULL;
        }
    }
    Py_DECREF(free_list);
    Py_INCREF(entry);
    Py_XSETREF(SLOT(co, entry_offset), entry);
    return co;
}

/* What qemu_coroutine_enter does when co has terminated: back to the pool
 * (_coroutine_delete), unless something escaped it: then Python's
 * _coroutine_terminated raises it. */
static PyObject *coroutine_terminated(PyObject *co)
{
    PyObject *exc = SLOT(co, exception_offset);
    PyObject *free_list;
    int ret = 0;

    if (exc && exc != Py_None) {
        return PyObject_CallOneArg(terminated, co);
    }
    free_list = PyObject_GetAttr(pool, free_name);
    if (!free_list) {
        return NULL;
    }
    if (PyList_GET_SIZE(free_list) < pool_max) {
        ret = PyList_Append(free_list, co);
    }
    Py_DECREF(free_list);
    if (ret < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *coroutine_enter(PyObject *module, PyObject *const *args,
                                 Py_ssize_t nargs)
{
    PyObject *co, *opaque, *switch_args, *ret, *wakeup;

    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError,
                        "qemu_coroutine_enter(co, opaque=None)");
        return NULL;
    }
    co = args[0];
    opaque = nargs == 2 ? args[1] : Py_None;
    if (Py_TYPE(co) != coroutine_type) {
        PyErr_SetString(PyExc_TypeError, "qemu_coroutine_enter needs a Coroutine");
        return NULL;
    }
    if (SLOT(co, caller_offset) != NULL && SLOT(co, caller_offset) != Py_None) {
        PyErr_SetString(PyExc_AssertionError,
                        "Co-routine re-entered recursively");
        return NULL;
    }
    Py_XSETREF(SLOT(co, caller_offset), (PyObject *)PyGreenlet_GetCurrent());

    switch_args = PyTuple_Pack(1, opaque);
    if (!switch_args) {
        return NULL;
    }
    Py_INCREF(co);  /* the switch may drop the last other reference */
    ret = PyGreenlet_Switch((PyGreenlet *)co, switch_args, NULL);
    Py_DECREF(switch_args);
    if (!ret) {
        Py_DECREF(co);
        return NULL;
    }

    wakeup = SLOT(co, wakeup_offset);
    if (wakeup && PyObject_IsTrue(wakeup)) {
        PyObject *r = PyObject_CallOneArg(run_restart, co);
        if (!r) {
            Py_DECREF(ret);
            Py_DECREF(co);
            return NULL;
        }
        Py_DECREF(r);
    }
    if (ret == terminate_marker) {
        Py_DECREF(ret);
        ret = coroutine_terminated(co);
        Py_DECREF(co);
        return ret;
    }
    Py_DECREF(ret);
    Py_DECREF(co);
    Py_RETURN_NONE;
}

static PyObject *coroutine_yield(PyObject *module, PyObject *unused)
{
    PyGreenlet *self = PyGreenlet_GetCurrent();
    PyObject *to, *ret;

    if (!self) {
        return NULL;
    }
    to = Py_TYPE(self) == coroutine_type ? SLOT(self, caller_offset) : NULL;
    if (!to || to == Py_None) {
        Py_DECREF(self);
        PyErr_SetString(PyExc_AssertionError,
                        "Co-routine is yielding to no one");
        return NULL;
    }
    /* Take the caller out of the slot; our reference keeps it alive. */
    SLOT(self, caller_offset) = Py_None;
    Py_INCREF(Py_None);
    Py_DECREF(self);

    ret = PyGreenlet_Switch((PyGreenlet *)to, empty_tuple, NULL);
    Py_DECREF(to);
    if (!ret) {
        return NULL;
    }
    Py_DECREF(ret);
    Py_RETURN_NONE;
}

static PyMethodDef coroutine_c_methods[] = {
    {"init", coroutine_c_init, METH_VARARGS,
     "init(Coroutine, COROUTINE_TERMINATE, run_restart, terminated, pool,"
     " pool_max)"},
    {"qemu_coroutine_create", coroutine_create, METH_O,
     "qemu_coroutine_create(entry)"},
    {"qemu_coroutine_enter", (PyCFunction)(void (*)(void))coroutine_enter,
     METH_FASTCALL, "qemu_coroutine_enter(co, opaque=None)"},
    {"qemu_coroutine_yield", coroutine_yield, METH_NOARGS,
     "qemu_coroutine_yield()"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef coroutine_c_module = {
    PyModuleDef_HEAD_INIT, "util._coroutine_c", NULL, -1, coroutine_c_methods,
};

PyMODINIT_FUNC PyInit__coroutine_c(void)
{
    PyGreenlet_Import();
    if (!_PyGreenlet_API) {
        return NULL;
    }
    empty_tuple = PyTuple_New(0);
    if (!empty_tuple) {
        return NULL;
    }
    return PyModule_Create(&coroutine_c_module);
}
