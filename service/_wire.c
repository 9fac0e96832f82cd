/* The steady ticks of a serialized StreamRequest, read straight from its wire format.
 *
 * A media server in its steady state sends, per room and tick, only the room id, the
 * timestamp, the duration and one RFC 6464 byte per participant of the sticky roster.
 * Reading those four fields through the protobuf objects costs about a microsecond per
 * field access from Python (each access wraps a C object); a batch of 2,000 rooms spent
 * more time there than in the engine. This scans the bytes once and hands each such tick
 * to service/rooms.py as a plain tuple. Anything else (events, audio, config, a roster,
 * an unknown or repeated field, a field with an unexpected wire type) is marked None and
 * takes the ordinary path through the protobuf object, which is the reference: the two
 * give byte-identical responses (tests/test_wire.py).
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

/* One RoomTick at [p, end): a new (room_id, timestamp_ms, duration_ms, levels) tuple if
 * it is steady; Py_None (a new reference) if not; NULL with an exception if malformed. */
static PyObject *steady_tick(const uint8_t *p, const uint8_t *end)
{
    const uint8_t *room = NULL, *levels = NULL;
    Py_ssize_t n_room = 0, n_levels = 0;
    uint64_t timestamp = 0, duration = 0;
    int seen_t = 0, seen_d = 0, seen_lv = 0, steady = 1;
    while (p < end && steady) {
        uint64_t tag, n;
        if (read_varint(&p, end, &tag)) goto malformed;
        int field = (int)(tag >> 3), wt = (int)(tag & 7);
        if (field == F_ROOM_ID && wt == WT_LEN && room == NULL) {
            if (read_varint(&p, end, &n) || n > (uint64_t)(end - p)) goto malformed;
            room = p;
            n_room = (Py_ssize_t)n;
            p += n;
        } else if (field == F_TIMESTAMP_MS && wt == WT_VARINT && !seen_t) {
            if (read_varint(&p, end, &timestamp)) goto malformed;
            seen_t = 1;
        } else if (field == F_DURATION_MS && wt == WT_VARINT && !seen_d) {
            if (read_varint(&p, end, &duration)) goto malformed;
            seen_d = 1;
            steady = duration <= UINT32_MAX; /* else protobuf truncates: let it */
        } else if (field == F_LEVELS && wt == WT_LEN && !seen_lv) {
            if (read_varint(&p, end, &n) || n > (uint64_t)(end - p)) goto malformed;
            int only = level_bytes_only(p, p + n, &levels, &n_levels);
            if (only < 0) goto malformed;
            steady = only;
            p += n;
            seen_lv = 1;
        } else {
            steady = 0; /* events, audio, config, unknown or repeated fields */
        }
    }
    if (!steady || room == NULL || n_room == 0 || !seen_lv)
        Py_RETURN_NONE;
    PyObject *room_id = PyUnicode_DecodeUTF8((const char *)room, n_room, "strict");
    if (room_id == NULL) { /* the protobuf path says what is wrong with it */
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    return Py_BuildValue("(NLky#)", room_id, (long long)(int64_t)timestamp,
                         (unsigned long)duration, (const char *)levels, n_levels);
malformed:
    PyErr_SetString(PyExc_ValueError, "malformed RoomTick");
    return NULL;
}

static PyObject *steady_ticks(PyObject *self, PyObject *args)
{
    Py_buffer raw;
    if (!PyArg_ParseTuple(args, "y*", &raw))
        return NULL;
    const uint8_t *p = raw.buf, *end = p + raw.len;
    PyObject *out = PyList_New(0);
    if (out == NULL) goto fail;
    while (p < end) {
        uint64_t tag, n;
        if (read_varint(&p, end, &tag)) goto malformed;
        int field = (int)(tag >> 3), wt = (int)(tag & 7);
        if (field != F_TICKS || wt != WT_LEN) {
            if (skip_value(&p, end, wt)) goto malformed;
            continue;
        }
        if (read_varint(&p, end, &n) || n > (uint64_t)(end - p)) goto malformed;
        PyObject *tick = steady_tick(p, p + n);
        if (tick == NULL) goto fail;
        p += n;
        int err = PyList_Append(out, tick);
        Py_DECREF(tick);
        if (err) goto fail;
    }
    PyBuffer_Release(&raw);
    return out;
malformed:
    PyErr_SetString(PyExc_ValueError, "malformed StreamRequest");
fail:
    Py_XDECREF(out);
    PyBuffer_Release(&raw);
    return NULL;
}

static PyMethodDef methods[] = {
    {"steady_ticks", steady_ticks, METH_VARARGS,
     "steady_ticks(serialized StreamRequest) -> [(room_id, timestamp_ms, duration_ms, "
     "levels) or None per tick]; ValueError if the bytes are not a StreamRequest."},
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
