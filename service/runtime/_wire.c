/* The steady ticks of a serialized StreamRequest, read straight from its wire format.
 *
 * A media server in its steady state sends, per room and tick, only the room id, the
 * timestamp, the duration and one RFC 6464 byte per participant of the sticky roster.
 * Reading those four fields through the protobuf objects costs about a microsecond per
 * field access from Python (each access wraps a C object); a batch of 2,000 rooms spent
 * more time there than in the engine. This scans the bytes once and hands each such tick
 * to service/runtime/rooms/registry.py as a plain tuple. Anything else (events, audio,
 * config, a roster, an unknown or repeated field, a field with an unexpected wire type) is
 * marked None and takes the ordinary path through the protobuf object, which is the
 * reference: the two give byte-identical responses (tests/test_wire.py).
 *
 * Wire format: https://protobuf.dev/programming-guides/encoding/ (varints, tags, wire
 * types). Field numbers are those of proto/speakerswitch/v1/speakerswitch.proto.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#define ABI_VERSION 1

/* StreamRequest */
#define F_TICKS 2
/* RoomTick */
#define F_ROOM_ID 1
#define F_TIMESTAMP_MS 2
#define F_DURATION_MS 3
#define F_LEVELS 6
/* LevelVector */
#define F_LEVEL_BYTES 2

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

/* Reads a varint at *p (< end); 0 on success, -1 if it runs past end or over 10 bytes. */
static int read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (*p >= end)
            return -1;
        uint8_t b = *(*p)++;
        v |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* Skips a field's value of wire type wt; 0 on success, -1 if malformed or a group. */
static int skip_value(const uint8_t **p, const uint8_t *end, int wt)
{
    uint64_t n;
    switch (wt) {
    case WT_VARINT:
        return read_varint(p, end, &n);
    case WT_I64:
        if (end - *p < 8) return -1;
        *p += 8;
        return 0;
    case WT_I32:
        if (end - *p < 4) return -1;
        *p += 4;
        return 0;
    case WT_LEN:
        if (read_varint(p, end, &n) || n > (uint64_t)(end - *p)) return -1;
        *p += n;
        return 0;
    default:
        return -1;
    }
}

/* The LevelVector at [p, end) holds only its level bytes, once: 1 and the bytes; else 0.
 * -1 if malformed. */
static int level_bytes_only(const uint8_t *p, const uint8_t *end,
                            const uint8_t **bytes, Py_ssize_t *n_bytes)
{
    int seen = 0;
    *bytes = p;
    *n_bytes = 0;
    while (p < end) {
        uint64_t tag, n;
        if (read_varint(&p, end, &tag)) return -1;
        if ((tag >> 3) == F_LEVEL_BYTES && (tag & 7) == WT_LEN && !seen) {
            if (read_varint(&p, end, &n) || n > (uint64_t)(end - p)) return -1;
            *bytes = p;
            *n_bytes = (Py_ssize_t)n;
            p += n;
            seen = 1;
            continue;
        }
        return 0; /* a roster, a repeated or unknown field: not steady */
    }
    return 1;
}

/* A RoomTick's fields, as far as a steady tick needs them. */
typedef struct {
    const uint8_t *room, *levels;
    Py_ssize_t n_room, n_levels;
    int64_t timestamp;
    uint32_t duration;
} TickFields;

/* Reads the RoomTick at [p, end): 1 if it is steady (room id, timestamp, duration and
 * level bytes at most once each, nothing else, a room id and a LevelVector present),
 * 0 if not, -1 if malformed. */
static int read_tick(const uint8_t *p, const uint8_t *end, TickFields *f)
{
    uint64_t timestamp = 0, duration = 0;
    int seen_t = 0, seen_d = 0, seen_lv = 0;
    f->room = f->levels = NULL;
    f->n_room = f->n_levels = 0;
    while (p < end) {
        uint64_t tag, n;
        if (read_varint(&p, end, &tag)) return -1;
        int field = (int)(tag >> 3), wt = (int)(tag & 7);
        if (field == F_ROOM_ID && wt == WT_LEN && f->room == NULL) {
            if (read_varint(&p, end, &n) || n > (uint64_t)(end - p)) return -1;
            f->room = p;
            f->n_room = (Py_ssize_t)n;
            p += n;
        } else if (field == F_TIMESTAMP_MS && wt == WT_VARINT && !seen_t) {
            if (read_varint(&p, end, &timestamp)) return -1;
            seen_t = 1;
        } else if (field == F_DURATION_MS && wt == WT_VARINT && !seen_d) {
            if (read_varint(&p, end, &duration)) return -1;
            if (duration > UINT32_MAX) return 0; /* protobuf truncates it: let it */
            seen_d = 1;
        } else if (field == F_LEVELS && wt == WT_LEN && !seen_lv) {
            if (read_varint(&p, end, &n) || n > (uint64_t)(end - p)) return -1;
            int only = level_bytes_only(p, p + n, &f->levels, &f->n_levels);
            if (only <= 0) return only;
            p += n;
            seen_lv = 1;
        } else {
            return 0; /* events, audio, config, unknown or repeated fields */
        }
    }
    f->timestamp = (int64_t)timestamp;
    f->duration = (uint32_t)duration;
    return f->room != NULL && f->n_room > 0 && seen_lv;
}

/* A steady tick's room id as str; NULL (no exception) if it is not UTF-8. */
static PyObject *room_id_of(const TickFields *f)
{
    PyObject *room_id = PyUnicode_DecodeUTF8((const char *)f->room, f->n_room, "strict");
    if (room_id == NULL)
        PyErr_Clear(); /* the protobuf path says what is wrong with it */
    return room_id;
}

/* Calls on_tick for each RoomTick of the StreamRequest in [*at, end), at most max_ticks of
 * them (< 0: all), leaving *at after the last one read; -1 with ValueError if the bytes
 * are malformed, or -1 if on_tick fails. */
static int for_ticks(const uint8_t **at, const uint8_t *end, Py_ssize_t max_ticks,
                     int (*on_tick)(void *, int, const TickFields *), void *arg)
{
    const uint8_t *p = *at;
    while (p < end && max_ticks != 0) {
        uint64_t tag, n;
        if (read_varint(&p, end, &tag)) goto malformed;
        int field = (int)(tag >> 3), wt = (int)(tag & 7);
        if (field != F_TICKS || wt != WT_LEN) {
            if (skip_value(&p, end, wt)) goto malformed;
            continue;
        }
        if (read_varint(&p, end, &n) || n > (uint64_t)(end - p)) goto malformed;
        TickFields f;
        int steady = read_tick(p, p + n, &f);
        if (steady < 0) goto malformed;
        if (on_tick(arg, steady, &f)) return -1;
        p += n;
        *at = p;
        if (max_ticks > 0) max_ticks--;
    }
    *at = p;
    return 0;
malformed:
    PyErr_SetString(PyExc_ValueError, "malformed StreamRequest");
    return -1;
}

static int append_tuple(void *arg, int steady, const TickFields *f)
{
    PyObject *tick = NULL, *room_id = steady ? room_id_of(f) : NULL;
    if (room_id == NULL) {
        tick = Py_NewRef(Py_None);
    } else {
        tick = Py_BuildValue("(NLky#)", room_id, (long long)f->timestamp,
                             (unsigned long)f->duration, (const char *)f->levels,
                             f->n_levels);
        if (tick == NULL) return -1;
    }
    int err = PyList_Append((PyObject *)arg, tick);
    Py_DECREF(tick);
    return err;
}

static int for_each_tick(const uint8_t *p, const uint8_t *end,
                         int (*on_tick)(void *, int, const TickFields *), void *arg)
{
    return for_ticks(&p, end, -1, on_tick, arg);
}

static PyObject *steady_ticks(PyObject *self, PyObject *args)
{
    Py_buffer raw;
    if (!PyArg_ParseTuple(args, "y*", &raw))
        return NULL;
    PyObject *out = PyList_New(0);
    if (out != NULL && for_each_tick(raw.buf, (const uint8_t *)raw.buf + raw.len,
                                     append_tuple, out) < 0)
        Py_CLEAR(out);
    PyBuffer_Release(&raw);
    return out;
}

static PyObject *steady_ticks_part(PyObject *self, PyObject *args)
{
    Py_buffer raw;
    Py_ssize_t offset, max_ticks;
    if (!PyArg_ParseTuple(args, "y*nn", &raw, &offset, &max_ticks))
        return NULL;
    if (offset < 0 || offset > raw.len || max_ticks < 1) {
        PyBuffer_Release(&raw);
        PyErr_SetString(PyExc_ValueError, "offset outside the bytes, or max_ticks < 1");
        return NULL;
    }
    const uint8_t *at = (const uint8_t *)raw.buf + offset;
    PyObject *out = PyList_New(0), *result = NULL;
    if (out != NULL && for_ticks(&at, (const uint8_t *)raw.buf + raw.len, max_ticks,
                                 append_tuple, out) == 0)
        result = Py_BuildValue("(On)", out, (Py_ssize_t)(at - (const uint8_t *)raw.buf));
    Py_XDECREF(out);
    PyBuffer_Release(&raw);
    return result;
}

/* steady_columns' growing output */
typedef struct {
    PyObject *room_ids;          /* list: str, or None where a tick is not steady */
    int64_t *timestamp, *duration, *n_levels;
    const uint8_t **levels;
    Py_ssize_t n, cap, total_levels;
} Columns;

static int append_columns(void *arg, int steady, const TickFields *f)
{
    Columns *c = arg;
    if (c->n == c->cap) {
        Py_ssize_t cap = c->cap ? 2 * c->cap : 256;
        int64_t *t = PyMem_Realloc(c->timestamp, cap * sizeof *t);
        if (t) c->timestamp = t;
        int64_t *d = t ? PyMem_Realloc(c->duration, cap * sizeof *d) : NULL;
        if (d) c->duration = d;
        int64_t *k = d ? PyMem_Realloc(c->n_levels, cap * sizeof *k) : NULL;
        if (k) c->n_levels = k;
        const uint8_t **l = k ? PyMem_Realloc(c->levels, cap * sizeof *l) : NULL;
        if (l == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        c->levels = l;
        c->cap = cap;
    }
    PyObject *room_id = steady ? room_id_of(f) : NULL;
    if (room_id == NULL) {
        room_id = Py_NewRef(Py_None);
        steady = 0;
    }
    int err = PyList_Append(c->room_ids, room_id);
    Py_DECREF(room_id);
    if (err) return -1;
    Py_ssize_t i = c->n++;
    c->timestamp[i] = steady ? f->timestamp : 0;
    c->duration[i] = steady ? f->duration : 0;
    c->n_levels[i] = steady ? f->n_levels : 0;
    c->levels[i] = steady ? f->levels : NULL;
    c->total_levels += c->n_levels[i];
    return 0;
}

static PyObject *steady_columns(PyObject *self, PyObject *args)
{
    Py_buffer raw;
    if (!PyArg_ParseTuple(args, "y*", &raw))
        return NULL;
    Columns c = {PyList_New(0), NULL, NULL, NULL, NULL, 0, 0, 0};
    PyObject *out = NULL, *levels = NULL;
    if (c.room_ids == NULL || for_each_tick(raw.buf, (const uint8_t *)raw.buf + raw.len,
                                            append_columns, &c) < 0)
        goto done;
    levels = PyBytes_FromStringAndSize(NULL, c.total_levels);
    if (levels == NULL) goto done;
    char *at = PyBytes_AS_STRING(levels);
    for (Py_ssize_t i = 0; i < c.n; i++) {
        if (c.n_levels[i]) memcpy(at, c.levels[i], c.n_levels[i]);
        at += c.n_levels[i];
    }
    Py_ssize_t size = c.n * (Py_ssize_t)sizeof(int64_t);
    static const char none[1];
    /* no ticks: empty columns (y# of NULL would be None) */
    out = Py_BuildValue("(Oy#y#Ny#)", c.room_ids, c.n ? (const char *)c.timestamp : none,
                        size, c.n ? (const char *)c.duration : none, size, levels,
                        c.n ? (const char *)c.n_levels : none, size);
    levels = NULL; /* the tuple owns it, or it was released by the failed call */
done:
    Py_XDECREF(levels);
    Py_XDECREF(c.room_ids);
    PyMem_Free(c.timestamp);
    PyMem_Free(c.duration);
    PyMem_Free(c.n_levels);
    PyMem_Free(c.levels);
    PyBuffer_Release(&raw);
    return out;
}

static PyMethodDef methods[] = {
    {"steady_ticks", steady_ticks, METH_VARARGS,
     "steady_ticks(serialized StreamRequest) -> [(room_id, timestamp_ms, duration_ms, "
     "levels) or None per tick]; ValueError if the bytes are not a StreamRequest."},
    {"steady_ticks_part", steady_ticks_part, METH_VARARGS,
     "steady_ticks_part(serialized StreamRequest, offset, max_ticks) -> (steady_ticks of at "
     "most max_ticks ticks from byte offset, the offset after them): a huge batch read in "
     "parts, so that a server can serve other calls in between."},
    {"steady_columns", steady_columns, METH_VARARGS,
     "steady_columns(serialized StreamRequest) -> (room_ids, timestamp_ms, duration_ms, "
     "levels, level_counts): per tick its room id (None where the tick is not steady), "
     "int64 timestamps, durations and level byte counts as bytes (0 where not steady), "
     "and every steady tick's level bytes end to end; ValueError as steady_ticks."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_wire", "Steady ticks read from a StreamRequest's bytes.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__wire(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "ABI", ABI_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
