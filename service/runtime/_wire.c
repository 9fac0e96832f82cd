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

#define ABI_VERSION 3

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

#define WT_START_GROUP 3
#define WT_END_GROUP 4
#define MAX_GROUP_DEPTH 64

/* Skips a field's value of wire type wt; 0 on success, -1 if malformed. An unknown field
 * may be a (deprecated) group, which protobuf accepts and skips: so must the scanner. */
static int skip_value(const uint8_t **p, const uint8_t *end, int wt)
{
    uint64_t n;
    if (wt == WT_START_GROUP) {
        int depth = 1;
        while (depth > 0) {
            uint64_t tag;
            if (read_varint(p, end, &tag))
                return -1;
            const int inner = (int)(tag & 7);
            if (inner == WT_END_GROUP)
                depth--;
            else if (inner == WT_START_GROUP) {
                if (++depth > MAX_GROUP_DEPTH)
                    return -1;
            } else if (skip_value(p, end, inner))
                return -1;
        }
        return 0;
    }
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
    PyObject *kept;              /* steady_columns_kept: the last batch's room ids, or NULL */
    int all_kept;                /* every tick so far steady, with kept's id at its place */
} Columns;

/* kept[i] when it is a str whose UTF-8 is the tick's room id (a new reference), else NULL
 * (no exception). */
static PyObject *kept_id(Columns *c, const TickFields *f)
{
    if (c->kept == NULL || !c->all_kept || c->n >= PyList_GET_SIZE(c->kept))
        return NULL;
    PyObject *id = PyList_GET_ITEM(c->kept, c->n);
    if (!PyUnicode_Check(id))
        return NULL;
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(id, &n);
    if (utf8 == NULL) {
        PyErr_Clear();
        return NULL;
    }
    if (n != f->n_room || memcmp(utf8, f->room, n) != 0)
        return NULL;
    return Py_NewRef(id);
}

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
    PyObject *room_id = steady ? kept_id(c, f) : NULL;
    if (room_id == NULL) {
        c->all_kept = 0;
        room_id = steady ? room_id_of(f) : NULL;
    }
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

static PyObject *columns_of(Py_buffer raw, PyObject *kept)
{
    Columns c = {PyList_New(0), NULL, NULL, NULL, NULL, 0, 0, 0, kept, kept != NULL};
    PyObject *out = NULL, *levels = NULL;
    if (c.room_ids == NULL || for_each_tick(raw.buf, (const uint8_t *)raw.buf + raw.len,
                                            append_columns, &c) < 0)
        goto done;
    if (kept != NULL && c.all_kept && c.n == PyList_GET_SIZE(kept)) {
        Py_SETREF(c.room_ids, Py_NewRef(kept)); /* the same rooms: the caller sees it is */
    }
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
    return out;
}

static PyObject *steady_columns(PyObject *self, PyObject *args)
{
    Py_buffer raw;
    if (!PyArg_ParseTuple(args, "y*", &raw))
        return NULL;
    PyObject *out = columns_of(raw, NULL);
    PyBuffer_Release(&raw);
    return out;
}

static PyObject *steady_columns_kept(PyObject *self, PyObject *args)
{
    Py_buffer raw;
    PyObject *kept;
    if (!PyArg_ParseTuple(args, "y*O!", &raw, &PyList_Type, &kept))
        return NULL;
    PyObject *out = columns_of(raw, kept);
    PyBuffer_Release(&raw);
    return out;
}

/* ------------------------------------------------------------------ events out
 *
 * The engine's events of one room as RoomEvent messages framed as StreamResponse.events,
 * appended to a bytearray that the registry merges into the response in one
 * MergeFromString: a RoomEvent built and appended through the protobuf objects cost
 * 2-12 us (an ActiveSpeakers of ten the most), on ~100 events a tick at 2,000 rooms.
 * The values are those service/runtime/rooms/events.py's convert sets (which stays the
 * reference: tests/test_wire_events.py), converted as protobuf's setters convert them
 * (a float field is the double cast to float); the response is then serialized by
 * protobuf from what it parsed, so only the values have to agree. A sub-message the
 * reference touches is present even when all its fields are defaults; an ActiveSpeakers
 * with no speaker is not touched (no event field at all). */

/* StreamResponse */
#define F_EVENTS 2
/* RoomEvent */
#define F_EV_ROOM_ID 1
#define F_EV_SEQUENCE 2
#define F_EV_TIMESTAMP 3
#define F_EV_SWITCH 4
#define F_EV_FLOOR 5
#define F_EV_ACTIVE 6
#define F_EV_SPEAKING 7
#define F_EV_PRESENTATION 9
#define F_EV_FORWARDING 10

/* event kinds, as the caller's kinds dict maps the event classes */
enum { K_SWITCH = 1, K_FLOOR, K_SPEAKING, K_ACTIVE, K_PRESENTATION, K_FORWARDING };

typedef struct {
    char *p;
    Py_ssize_t n, cap;
} Buf;

static int buf_reserve(Buf *b, Py_ssize_t more)
{
    if (b->n + more <= b->cap)
        return 0;
    Py_ssize_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more)
        cap *= 2;
    char *p = PyMem_Realloc(b->p, cap);
    if (p == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

static int put_bytes(Buf *b, const void *data, Py_ssize_t n)
{
    if (buf_reserve(b, n)) return -1;
    memcpy(b->p + b->n, data, n);
    b->n += n;
    return 0;
}

static int put_varint(Buf *b, uint64_t v)
{
    if (buf_reserve(b, 10)) return -1;
    do {
        uint8_t byte = v & 0x7F;
        v >>= 7;
        b->p[b->n++] = (char)(byte | (v ? 0x80 : 0));
    } while (v);
    return 0;
}

static int put_tag(Buf *b, int field, int wt)
{
    return put_varint(b, ((uint64_t)field << 3) | (uint64_t)wt);
}

/* A length-delimited field: the tag, the length, the bytes (also for an empty value). */
static int put_len(Buf *b, int field, const void *data, Py_ssize_t n)
{
    if (put_tag(b, field, WT_LEN) || put_varint(b, (uint64_t)n)) return -1;
    return put_bytes(b, data, n);
}

static int put_str(Buf *b, int field, PyObject *str)
{
    Py_ssize_t n;
    const char *utf8 = PyUnicode_AsUTF8AndSize(str, &n);
    if (utf8 == NULL) return -1;
    return put_len(b, field, utf8, n);
}

static int put_int(Buf *b, int field, long long v)
{
    if (put_tag(b, field, WT_VARINT)) return -1;
    return put_varint(b, (uint64_t)v);
}

static int put_float(Buf *b, int field, double v)
{
    float f = (float)v;
    uint32_t bits;
    memcpy(&bits, &f, 4);
    if (put_tag(b, field, WT_I32) || buf_reserve(b, 4)) return -1;
    for (int i = 0; i < 4; i++) /* little-endian on the wire */
        b->p[b->n++] = (char)((bits >> (8 * i)) & 0xFF);
    return 0;
}

/* Attribute names of the events, interned once. */
static PyObject *s_t_ms, *s_slot, *s_previous, *s_reason, *s_score, *s_audio_slot,
    *s_onset_ms, *s_thumbnail, *s_has_video, *s_speaking, *s_slots, *s_levels_dbov,
    *s_activity, *s_empty;

static int intern_names(void)
{
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return -1
    INTERN(s_t_ms, "t_ms"); INTERN(s_slot, "slot"); INTERN(s_previous, "previous");
    INTERN(s_reason, "reason"); INTERN(s_score, "score"); INTERN(s_audio_slot, "audio_slot");
    INTERN(s_onset_ms, "onset_ms"); INTERN(s_thumbnail, "thumbnail");
    INTERN(s_has_video, "has_video"); INTERN(s_speaking, "speaking"); INTERN(s_slots, "slots");
    INTERN(s_levels_dbov, "levels_dbov"); INTERN(s_activity, "activity");
    INTERN(s_empty, "");
#undef INTERN
    return 0;
}

/* obj.attr as a long long / double / truth value; -1 (or -1.0) with an exception set on
 * failure (checked by PyErr_Occurred). */
static long long attr_int(PyObject *obj, PyObject *attr)
{
    PyObject *v = PyObject_GetAttr(obj, attr);
    if (v == NULL) return -1;
    long long out = PyLong_AsLongLong(v);
    Py_DECREF(v);
    return out;
}

static double attr_float(PyObject *obj, PyObject *attr)
{
    PyObject *v = PyObject_GetAttr(obj, attr);
    if (v == NULL) return -1.0;
    double out = PyFloat_AsDouble(v);
    Py_DECREF(v);
    return out;
}

static int attr_true(PyObject *obj, PyObject *attr)
{
    PyObject *v = PyObject_GetAttr(obj, attr);
    if (v == NULL) return -1;
    int out = PyObject_IsTrue(v);
    Py_DECREF(v);
    return out;
}

/* The participant id of a slot: names.get(slot, "") if slot >= 0 else "" (borrowed). */
static PyObject *name_of(PyObject *names, PyObject *slot)
{
    long long s = PyLong_AsLongLong(slot);
    if (s == -1 && PyErr_Occurred()) return NULL;
    if (s < 0) return s_empty;
    PyObject *name = PyDict_GetItemWithError(names, slot);
    if (name == NULL && !PyErr_Occurred()) return s_empty;
    return name;
}

static int put_name(Buf *b, int field, PyObject *names, PyObject *slot)
{
    PyObject *name = name_of(names, slot);
    if (name == NULL) return -1;
    return put_str(b, field, name);
}

static int put_name_attr(Buf *b, int field, PyObject *names, PyObject *e, PyObject *attr)
{
    PyObject *slot = PyObject_GetAttr(e, attr);
    if (slot == NULL) return -1;
    int err = put_name(b, field, names, slot);
    Py_DECREF(slot);
    return err;
}

/* The event's sub-message (Switch, FloorChange, ...) into sub; 0 if it has none to set
 * (an ActiveSpeakers with no speaker), 1 if written, -1 on error. */
static int put_event_body(Buf *sub, int kind, PyObject *e, PyObject *names, PyObject *reasons,
                          Buf *scratch)
{
    long long v;
    double d;
    int truth;
    switch (kind) {
    case K_SWITCH: {
        if (put_name_attr(sub, 1, names, e, s_slot)
            || put_name_attr(sub, 2, names, e, s_previous)) return -1;
        PyObject *reason = PyObject_GetAttr(e, s_reason);
        if (reason == NULL) return -1;
        PyObject *value = PyDict_GetItemWithError(reasons, reason);
        if (value == NULL) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "unknown switch reason %R", reason);
            Py_DECREF(reason);
            return -1;
        }
        Py_DECREF(reason);
        v = PyLong_AsLongLong(value);
        if (PyErr_Occurred() || put_int(sub, 3, v)) return -1;
        d = attr_float(e, s_score);
        if (PyErr_Occurred() || put_float(sub, 4, d)) return -1;
        if (put_name_attr(sub, 5, names, e, s_audio_slot)) return -1;
        v = attr_int(e, s_onset_ms);
        if (PyErr_Occurred() || put_int(sub, 6, v)) return -1;
        truth = attr_true(e, s_thumbnail);
        if (truth < 0 || put_int(sub, 7, truth)) return -1; /* VIDEO_SLOT_THUMBNAIL = 1 */
        return 1;
    }
    case K_FLOOR:
        if (put_name_attr(sub, 1, names, e, s_slot)
            || put_name_attr(sub, 2, names, e, s_previous)) return -1;
        truth = attr_true(e, s_has_video);
        if (truth < 0 || put_int(sub, 3, truth)) return -1;
        d = attr_float(e, s_score);
        if (PyErr_Occurred() || put_float(sub, 4, d)) return -1;
        v = attr_int(e, s_onset_ms);
        if (PyErr_Occurred() || put_int(sub, 5, v)) return -1;
        return 1;
    case K_SPEAKING:
        if (put_name_attr(sub, 1, names, e, s_slot)) return -1;
        truth = attr_true(e, s_speaking);
        if (truth < 0 || put_int(sub, 2, truth)) return -1;
        return 1;
    case K_PRESENTATION:
        if (put_name_attr(sub, 1, names, e, s_slot)
            || put_name_attr(sub, 2, names, e, s_previous)) return -1;
        return 1;
    case K_FORWARDING:
    case K_ACTIVE: {
        PyObject *cols[4] = {NULL, NULL, NULL, NULL};
        PyObject *attrs[4] = {s_slots, s_levels_dbov, s_speaking, s_activity};
        int n_cols = kind == K_ACTIVE ? 4 : 1, ret = -1;
        Py_ssize_t n = PY_SSIZE_T_MAX;
        for (int c = 0; c < n_cols; c++) {
            PyObject *col = PyObject_GetAttr(e, attrs[c]);
            if (col == NULL) goto done;
            cols[c] = PySequence_Fast(col, "event columns must be sequences");
            Py_DECREF(col);
            if (cols[c] == NULL) goto done;
            if (PySequence_Fast_GET_SIZE(cols[c]) < n) n = PySequence_Fast_GET_SIZE(cols[c]);
        }
        if (kind == K_ACTIVE && n == 0) { /* zip() of nothing: the field is never touched */
            ret = 0;
            goto done;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *slot = PySequence_Fast_GET_ITEM(cols[0], i);
            if (kind == K_FORWARDING) {
                if (put_name(sub, 1, names, slot)) goto done;
                continue;
            }
            scratch->n = 0;
            if (put_name(scratch, 1, names, slot)) goto done;
            d = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(cols[1], i));
            if (PyErr_Occurred() || put_float(scratch, 2, d)) goto done;
            truth = PyObject_IsTrue(PySequence_Fast_GET_ITEM(cols[2], i));
            if (truth < 0 || put_int(scratch, 3, truth)) goto done;
            d = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(cols[3], i));
            if (PyErr_Occurred() || put_float(scratch, 4, d)) goto done;
            if (put_len(sub, 1, scratch->p, scratch->n)) goto done;
        }
        ret = 1;
    done:
        for (int c = 0; c < 4; c++)
            Py_XDECREF(cols[c]);
        return ret;
    }
    default:
        PyErr_SetString(PyExc_ValueError, "unknown event kind");
        return -1;
    }
}

static const int event_field[] = {0, F_EV_SWITCH, F_EV_FLOOR, F_EV_SPEAKING, F_EV_ACTIVE,
                                  F_EV_PRESENTATION, F_EV_FORWARDING};

static PyObject *encode_events(PyObject *self, PyObject *args)
{
    PyObject *out, *room_id, *names, *events, *kinds, *reasons;
    unsigned long long sequence;
    if (!PyArg_ParseTuple(args, "O!UO!OKO!O!", &PyByteArray_Type, &out, &room_id,
                          &PyDict_Type, &names, &events, &sequence, &PyDict_Type, &kinds,
                          &PyDict_Type, &reasons))
        return NULL;
    PyObject *seq = PySequence_Fast(events, "events must be a sequence");
    if (seq == NULL) return NULL;
    Buf all = {0}, ev = {0}, sub = {0}, scratch = {0};
    PyObject *result = NULL;
    for (Py_ssize_t i = 0; i < PySequence_Fast_GET_SIZE(seq); i++) {
        PyObject *e = PySequence_Fast_GET_ITEM(seq, i);
        PyObject *kind_obj = PyDict_GetItemWithError(kinds, (PyObject *)Py_TYPE(e));
        if (kind_obj == NULL) {
            if (!PyErr_Occurred())
                PyErr_Format(PyExc_ValueError, "not an engine event: %R", e);
            goto done;
        }
        int kind = (int)PyLong_AsLong(kind_obj);
        if (kind < K_SWITCH || kind > K_FORWARDING) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "unknown event kind");
            goto done;
        }
        long long t = attr_int(e, s_t_ms);
        if (PyErr_Occurred()) goto done;
        sequence++;
        ev.n = sub.n = 0;
        if (put_str(&ev, F_EV_ROOM_ID, room_id) || put_int(&ev, F_EV_SEQUENCE, (long long)sequence)
            || put_int(&ev, F_EV_TIMESTAMP, t))
            goto done;
        int body = put_event_body(&sub, kind, e, names, reasons, &scratch);
        if (body < 0) goto done;
        if (body && put_len(&ev, event_field[kind], sub.p, sub.n)) goto done;
        if (put_len(&all, F_EVENTS, ev.p, ev.n)) goto done;
    }
    Py_ssize_t at = PyByteArray_GET_SIZE(out);
    if (PyByteArray_Resize(out, at + all.n)) goto done;
    if (all.n) memcpy(PyByteArray_AS_STRING(out) + at, all.p, all.n);
    result = PyLong_FromUnsignedLongLong(sequence);
done:
    PyMem_Free(all.p);
    PyMem_Free(ev.p);
    PyMem_Free(sub.p);
    PyMem_Free(scratch.p);
    Py_DECREF(seq);
    return result;
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
    {"steady_columns_kept", steady_columns_kept, METH_VARARGS,
     "steady_columns_kept(serialized StreamRequest, kept room ids) -> steady_columns, whose "
     "room ids are the kept list itself when every tick is steady and names, in order, "
     "the rooms it lists (no str made, and one identity test for the caller)."},
    {"encode_events", encode_events, METH_VARARGS,
     "encode_events(out: bytearray, room_id, names: {slot: participant id}, events, "
     "sequence, kinds: {event class: kind}, reasons: {reason: SwitchReason value}) -> the "
     "last sequence: appends the room's engine events, numbered from sequence + 1, to out "
     "as StreamResponse.events fields."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_wire", "Steady ticks read from a StreamRequest's bytes.", -1,
    methods,
};

PyMODINIT_FUNC PyInit__wire(void)
{
    if (intern_names() < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m != NULL && PyModule_AddIntConstant(m, "ABI", ABI_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
