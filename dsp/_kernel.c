/* One frame of every participant of a wave, compiled: the engine's level path.
 *
 * The same arithmetic as activity.update, Engine._speaking_reports,
 * switching.accumulate_evidence, switching.takeovers, forwarding.unchanged and
 * Engine._rankings (float32 state, float64 coefficients and tuning, each operation in the
 * dtype numpy gives it), one participant at a time, so that a small wave costs one call
 * instead of hundreds of numpy operations. Built with -ffp-contract=off and without
 * fast-math so that every result is byte-identical to the numpy path's (dsp/engine.py
 * keeps that path; DSP_KERNEL=numpy forces it; tests/test_engine_paths.py compares them).
 *
 * Arrays come through the buffer protocol (numpy arrays provide it): no numpy headers are
 * needed to build this. Every dtype, shape and index is checked before anything is
 * written, so a bad call raises instead of touching memory it should not.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#define ABI_VERSION 12

#define NEVER_MS (INT64_MIN / 4) /* dsp.state.NEVER_MS: np.iinfo(np.int64).min // 4 */
#define NOT_LOUD_MS (-NEVER_MS)  /* dsp.state.NOT_LOUD_MS */
#define NOT_RANKED ((int64_t)-1)
#define SILENCE (-127.0f)
#define SMOOTH_FLOOR (-100.0f)
#define INITIAL_FLOOR (-60.0f)
#define INITIAL_SPEECH_MAX (-20.0f)
#define ONSET_RESET (0.05f)
#define ONSET_MOD (3.0f)
#define LEAK_MIN_DB 3.0          /* dsp.activity.LEAK_MIN_DB */
#define LEAK_FOLLOW_SHARE 0.5    /* dsp.activity.LEAK_FOLLOW_SHARE */
#define LEAK_MIN_MOVE_DB 2.0     /* dsp.activity.LEAK_MIN_MOVE_DB */
#define NEWCOMER_ROOM_SIZE 8     /* dsp.switching.NEWCOMER_ROOM_SIZE */
#define ECHO_HOLD_MS 200.0               /* dsp.activity.ECHO_HOLD_MS */
#define ECHO_DECAY_DB_PER_MS 0.06        /* dsp.activity.ECHO_DECAY_DB_PER_MS */
#define ECHO_COUPLING_UP_DB 0.4          /* dsp.activity.ECHO_COUPLING_UP_DB */
#define ECHO_COUPLING_DOWN_DB 0.1        /* dsp.activity.ECHO_COUPLING_DOWN_DB */
#define ECHO_REFERENCE_MIN_DBOV (-50.0)  /* dsp.activity.ECHO_REFERENCE_MIN_DBOV */
#define ECHO_REFERENCE_GAP_DB 3.0        /* dsp.activity.ECHO_REFERENCE_GAP_DB */
#define ECHO_MARGIN_DB 6.0               /* dsp.activity.ECHO_MARGIN_DB */
#define ECHO_AUDIBLE_DB 6.0              /* dsp.activity.ECHO_AUDIBLE_DB */
#define IMPULSE_ONSET_MS 40.0            /* dsp.activity.IMPULSE_ONSET_MS */
#define IMPULSE_DROP_DB 4.0              /* dsp.activity.IMPULSE_DROP_DB */
#define IMPULSE_JUDGED_MS 100.0          /* dsp.activity.IMPULSE_JUDGED_MS */
#define IMPULSE_RECOVER_DB 6.0           /* dsp.activity.IMPULSE_RECOVER_DB */

/* rows of the per-slot tuning table (engine.SLOT_FIELDS order) */
enum { ENERGY_SNR, MIN_SNR, MIN_LEVEL, SPEECH_MARGIN, MIN_RUN, ACT_ATTACK_MS, SPEAKING_ON,
       SPEAKING_OFF, SWITCH_MARGIN, EVIDENCE_DECAY, TAKEOVER_RECENCY, MIN_MODULATION,
       SPEAKING_INTERVAL, NO_AUDIO_TIMEOUT, N_TUN };
/* rows of the coefficient table (activity.TIME_CONSTANTS order) */
enum { A_SPEECH_RISE, A_SPEECH_FALL, A_FLOOR_FALL, A_FLOOR_RISE, A_LEVEL_ATTACK,
       A_LEVEL_RELEASE, A_ACT_ATTACK, A_ACT_RELEASE, A_MODULATION, N_ALPHA };
/* rows of the per-room table (engine.ROOM_FIELDS order) */
enum { HOLD, MIN_SPEECH, INTERRUPT, OUTLAST, OUTLAST_TOTAL, SILENT_HOLD, AS_INTERVAL,
       AS_PLACES, FORWARDING_SIZE, OVERLAP_MARGIN, REPLY_HOLD, REPLY_TURN, NEWCOMER_SPEECH,
       LONG_TURN, LONG_TURN_HOLD,
       N_ROOM_TUN };

/* Python's min and max of two values (numba's too): the first unless the second is
 * strictly smaller (larger). */
static inline float minf_(float a, float b) { return b < a ? b : a; }
static inline float maxf_(float a, float b) { return b > a ? b : a; }
static inline double maxd_(double a, double b) { return b > a ? b : a; }

/* yes if c else no, selected by bit masks rather than by a branch: where c follows noisy
 * levels (the direction of a smoothing step) it is a coin toss, and a mispredicted branch
 * cost more than the arithmetic around it (so did a pick from a two-element array: its
 * load waits for the store of the pair) */
static inline double pick(int c, double yes, double no)
{
    uint64_t y, n, r;
    memcpy(&y, &yes, sizeof y);
    memcpy(&n, &no, sizeof n);
    const uint64_t mask = (uint64_t)0 - (uint64_t)(c != 0);
    r = (y & mask) | (n & ~mask);
    double out;
    memcpy(&out, &r, sizeof out);
    return out;
}

/* x + (up if y > x else down) * (y - x): float32 x, y; float64 result */
static inline double toward(float x, float y, double up, double down)
{
    const float d = y - x;
    return pick(d > 0, up, down) * (double)d + (double)x;
}

/* Python's (floored) modulo, for b > 0 */
static inline int64_t pymod(int64_t a, int64_t b)
{
    int64_t m = a % b;
    return (m != 0 && ((m < 0) != (b < 0))) ? m + b : m;
}

/* ------------------------------------------------------------------ arguments */
/* Three groups of arrays, by how long they live:
 * - a wave layout's (a Layout object, made once per layout by dsp/engine.py): which slots
 *   a wave of these rooms touches, their rooms' tuning, and the kernel's outputs;
 * - the engine state's (a State object): replaced only when the state grows;
 * - the wave's own (advance's other arguments): its levels and media time.
 * The first two keep their buffers between calls: numpy's buffer export costs ~0.15 us an
 * array, and acquiring ~45 of them was most of the cost of a small wave. */
enum { IDX, POS, ROOMS, DURATION_MS, DT, TUN, ALPHA, ROOM_TUN, MEMBERS, MEMBER_START,
       T_END_ROOM, LIVE, ACTIVE, STARTED, REFRESH, REPORTS, CHANGES, DUE, N_LAYOUT };
enum { NOISE_FLOOR, SPEECH_LEVEL, LEVEL_SMOOTH, ACTIVITY, SPEAKING, LAST_ACTIVE_MS,
       RUN_START_MS, LOUD_SINCE_MS, ONSET_MS, EVIDENCE_MS, VOICED_RUN_MS, LAST_LEVEL,
       MODULATION_DB, IMPULSE_PEAK_DBOV, IMPULSE_LOW_DBOV, IMPULSE, FOLLOW_DB, MOVE_DB, MUTED, SILENT, LAST_FRAME_MS, REPORTED_SPEAKING, REPORTED_MS, JOINED,
       HAS_HELD, ECHO_PEAK_DBOV, ECHO_PEAK_MS, ECHO_COUPLING_DB,
       HOLDER, FLOOR_SINCE_MS, PREVIOUS_HOLDER, PREVIOUS_TURN_MS, ROOM_T_MS, RANKING_T_MS, RANKING_PHASE_MS, RANKED, SLOT_ROOM, VIDEO, PINNED,
       SHOWN, FORWARDED, FORWARDED_MAIN, N_STATE };
enum { LEVEL_SLOTS, LEVEL, VOICE, PRESENT, T_MS, N_WAVE };

/* kind: f float32, d float64, q int64, i int32, b int8, ? bool */
typedef struct { char kind; int ndim; int writable; int optional; const char *name; } Spec;

static const Spec LAYOUT_SPECS[N_LAYOUT] = {
    [IDX] = {'q', 1, 0, 0, "idx"}, [POS] = {'q', 1, 0, 0, "pos"},
    [ROOMS] = {'q', 1, 0, 0, "rooms"}, [DURATION_MS] = {'q', 1, 0, 0, "duration_ms"},
    [DT] = {'f', 1, 0, 0, "dt"},
    [TUN] = {'d', 2, 0, 0, "tun"}, [ALPHA] = {'d', 2, 0, 0, "alpha"},
    [ROOM_TUN] = {'d', 2, 0, 0, "room_tun"}, [MEMBERS] = {'q', 1, 0, 0, "members"},
    [MEMBER_START] = {'q', 1, 0, 0, "member_start"},
    [T_END_ROOM] = {'q', 1, 1, 0, "t_end_room"}, [LIVE] = {'?', 1, 1, 0, "live"},
    [ACTIVE] = {'?', 1, 1, 0, "active"}, [STARTED] = {'q', 1, 1, 0, "started"},
    [REFRESH] = {'?', 1, 1, 0, "refresh"}, [REPORTS] = {'q', 1, 1, 0, "reports"},
    [CHANGES] = {'q', 2, 1, 0, "changes"}, [DUE] = {'q', 1, 1, 0, "due"},
};

static const Spec STATE_SPECS[N_STATE] = {
    [NOISE_FLOOR] = {'f', 1, 1, 0, "noise_floor"},
    [SPEECH_LEVEL] = {'f', 1, 1, 0, "speech_level"},
    [LEVEL_SMOOTH] = {'f', 1, 1, 0, "level_smooth"},
    [ACTIVITY] = {'f', 1, 1, 0, "activity"}, [SPEAKING] = {'?', 1, 1, 0, "speaking"},
    [LAST_ACTIVE_MS] = {'q', 1, 1, 0, "last_active_ms"},
    [RUN_START_MS] = {'q', 1, 1, 0, "run_start_ms"},
    [LOUD_SINCE_MS] = {'q', 1, 1, 0, "loud_since_ms"},
    [ONSET_MS] = {'q', 1, 1, 0, "onset_ms"},
    [EVIDENCE_MS] = {'f', 1, 1, 0, "evidence_ms"},
    [VOICED_RUN_MS] = {'f', 1, 1, 0, "voiced_run_ms"},
    [LAST_LEVEL] = {'f', 1, 1, 0, "last_level"},
    [MODULATION_DB] = {'f', 1, 1, 0, "modulation_db"},
    [IMPULSE_PEAK_DBOV] = {'f', 1, 1, 0, "impulse_peak_dbov"},
    [IMPULSE_LOW_DBOV] = {'f', 1, 1, 0, "impulse_low_dbov"},
    [IMPULSE] = {'?', 1, 1, 0, "impulse"},
    [FOLLOW_DB] = {'f', 1, 1, 0, "follow_db"}, [MOVE_DB] = {'f', 1, 1, 0, "move_db"},
    [MUTED] = {'?', 1, 0, 0, "muted"}, [SILENT] = {'?', 1, 1, 0, "silent"},
    [LAST_FRAME_MS] = {'q', 1, 1, 0, "last_frame_ms"},
    [REPORTED_SPEAKING] = {'?', 1, 1, 0, "reported_speaking"},
    [REPORTED_MS] = {'q', 1, 1, 0, "reported_ms"}, [JOINED] = {'q', 1, 0, 0, "joined"},
    [HAS_HELD] = {'?', 1, 0, 0, "has_held"},
    [ECHO_PEAK_DBOV] = {'f', 1, 1, 0, "echo_peak_dbov"},
    [ECHO_PEAK_MS] = {'q', 1, 1, 0, "echo_peak_ms"},
    [ECHO_COUPLING_DB] = {'f', 1, 1, 0, "echo_coupling_db"},
    [HOLDER] = {'i', 1, 0, 0, "holder"},
    [FLOOR_SINCE_MS] = {'q', 1, 0, 0, "floor_since_ms"},
    [PREVIOUS_HOLDER] = {'i', 1, 0, 0, "previous_holder"},
    [PREVIOUS_TURN_MS] = {'q', 1, 0, 0, "previous_turn_ms"},
    [ROOM_T_MS] = {'q', 1, 1, 0, "room_t_ms"},
    [RANKING_T_MS] = {'q', 1, 1, 0, "ranking_t_ms"},
    [RANKING_PHASE_MS] = {'q', 1, 0, 0, "ranking_phase_ms"},
    [RANKED] = {'q', 2, 1, 0, "ranked"}, [SLOT_ROOM] = {'i', 1, 0, 0, "slot_room"},
    [VIDEO] = {'?', 1, 0, 0, "video"}, [PINNED] = {'i', 1, 0, 0, "pinned"},
    [SHOWN] = {'i', 1, 0, 0, "shown"}, [FORWARDED] = {'q', 2, 0, 0, "forwarded"},
    [FORWARDED_MAIN] = {'q', 1, 0, 0, "forwarded_main"},
};

static const Spec WAVE_SPECS[N_WAVE] = {
    [LEVEL_SLOTS] = {'q', 1, 0, 0, "level_slots"}, [LEVEL] = {'f', 1, 0, 0, "level"},
    [VOICE] = {'b', 1, 0, 0, "voice"}, [PRESENT] = {'?', 1, 0, 1, "present"},
    [T_MS] = {'q', 1, 0, 0, "t_ms"},
};

static int kind_matches(const Py_buffer *b, char kind)
{
    const char *f = b->format ? b->format : "B";
    while (*f == '@' || *f == '=' || *f == '<')
        f++;
    if (f[0] == '\0' || f[1] != '\0')
        return 0;
    switch (kind) {
    case 'f': return *f == 'f' && b->itemsize == 4;
    case 'd': return *f == 'd' && b->itemsize == 8;
    case 'q': return (*f == 'q' || *f == 'l') && b->itemsize == 8;
    case 'i': return (*f == 'i' || *f == 'l') && b->itemsize == 4;
    case 'b': return *f == 'b' && b->itemsize == 1;
    case '?': return *f == '?' && b->itemsize == 1;
    }
    return 0;
}

static void release(Py_buffer *buf, int *held, int count)
{
    for (int k = 0; k < count; k++)
        if (held[k]) {
            PyBuffer_Release(&buf[k]);
            held[k] = 0;
        }
}

/* Each argument's buffer, of the kind and dimensions its spec says (what, for errors:
 * the function or type taking them). */
static int acquire(const char *what, const Spec *specs, int count, PyObject *const *args,
                   Py_buffer *buf, int *held)
{
    for (int k = 0; k < count; k++) {
        const Spec *s = &specs[k];
        if (s->optional && args[k] == Py_None)
            continue;
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (s->writable ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(args[k], &buf[k], flags) < 0) {
            PyErr_Format(PyExc_TypeError, "%s: %s is not a C-contiguous%s array (%R)", what,
                         s->name, s->writable ? ", writable" : "", Py_TYPE(args[k]));
            return -1;
        }
        held[k] = 1;
        if (!kind_matches(&buf[k], s->kind) || buf[k].ndim != s->ndim) {
            PyErr_Format(PyExc_TypeError, "%s: %s has format %s and %d dimensions, "
                         "not '%c' and %d", what, s->name, buf[k].format, buf[k].ndim,
                         s->kind, s->ndim);
            return -1;
        }
    }
    return 0;
}

static int bad(const char *what)
{
    PyErr_Format(PyExc_ValueError, "advance: %s", what);
    return -1;
}

/* ------------------------------------------------------------------ Layout and State */
typedef struct {
    PyObject_HEAD
    Py_buffer buf[N_LAYOUT];
    int held[N_LAYOUT];
    int floor_on;          /* every room of the wave runs our floor logic */
    uint64_t checked;      /* the State its slots and rooms were last checked against */
} Layout;

typedef struct {
    PyObject_HEAD
    Py_buffer buf[N_STATE];
    int held[N_STATE];
    uint64_t serial;       /* unique per State made: what a Layout was checked against */
} State;

static uint64_t states_made = 0;

static void layout_dealloc(Layout *self)
{
    release(self->buf, self->held, N_LAYOUT);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static void state_dealloc(State *self)
{
    release(self->buf, self->held, N_STATE);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject LayoutType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dsp._kernel.Layout",
    .tp_basicsize = sizeof(Layout),
    .tp_dealloc = (destructor)layout_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A wave layout's arrays, held for advance (see layout()).",
};

static PyTypeObject StateType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dsp._kernel.State",
    .tp_basicsize = sizeof(State),
    .tp_dealloc = (destructor)state_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The engine state's arrays, held for advance (see state()).",
};

#define LEN(b, k) ((b)[k].shape[0])
#define P(type, b, k) ((type *)(b)[k].buf)

/* A layout's arrays, consistent among themselves (what does not depend on the state) */
static int check_layout(const Py_buffer *b)
{
    const Py_ssize_t n = LEN(b, IDX), n_rooms = LEN(b, ROOMS);
    static const int per_wave_slot[] = {POS, MEMBERS, LIVE, ACTIVE, STARTED, REFRESH,
                                        REPORTS};
    for (size_t k = 0; k < sizeof per_wave_slot / sizeof *per_wave_slot; k++)
        if (LEN(b, per_wave_slot[k]) != n)
            return bad(LAYOUT_SPECS[per_wave_slot[k]].name);
    static const int per_wave_room[] = {DURATION_MS, DT, T_END_ROOM, CHANGES, DUE};
    for (size_t k = 0; k < sizeof per_wave_room / sizeof *per_wave_room; k++)
        if (LEN(b, per_wave_room[k]) != n_rooms)
            return bad(LAYOUT_SPECS[per_wave_room[k]].name);
    if (b[CHANGES].shape[1] != 2)
        return bad("changes");
    if (LEN(b, TUN) != n_rooms || b[TUN].shape[1] != N_TUN || LEN(b, ALPHA) != n_rooms
        || b[ALPHA].shape[1] != N_ALPHA || LEN(b, ROOM_TUN) != n_rooms
        || b[ROOM_TUN].shape[1] != N_ROOM_TUN)
        return bad("tuning table shapes");
    const int64_t *rooms = P(int64_t, b, ROOMS), *idx = P(int64_t, b, IDX),
                  *pos = P(int64_t, b, POS), *members = P(int64_t, b, MEMBERS),
                  *member_start = P(int64_t, b, MEMBER_START);
    if (LEN(b, MEMBER_START) != n_rooms + 1 || member_start[0] != 0
        || member_start[n_rooms] != n)
        return bad("members");
    for (Py_ssize_t p = 0; p < n_rooms; p++) {
        if (rooms[p] < 0)
            return bad("rooms");
        if (member_start[p + 1] < member_start[p])
            return bad("member_start");
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (idx[i] < 0 || members[i] < 0)
            return bad("idx");
        if (pos[i] < 0 || pos[i] >= n_rooms)
            return bad("pos");
    }
    return 0;
}

/* The state's arrays: one length per slot, at least one row per room */
static int check_state(const Py_buffer *b)
{
    const Py_ssize_t n_slots = LEN(b, NOISE_FLOOR), n_all_rooms = LEN(b, HOLDER);
    static const int per_slot[] = {SPEECH_LEVEL, LEVEL_SMOOTH, ACTIVITY, SPEAKING,
                                   LAST_ACTIVE_MS, RUN_START_MS, LOUD_SINCE_MS, ONSET_MS,
                                   EVIDENCE_MS, VOICED_RUN_MS, LAST_LEVEL, MODULATION_DB,
                                   IMPULSE_PEAK_DBOV, IMPULSE_LOW_DBOV, IMPULSE,
                                   FOLLOW_DB, MOVE_DB,
                                   MUTED, SILENT, LAST_FRAME_MS, REPORTED_SPEAKING,
                                   REPORTED_MS, JOINED, SLOT_ROOM, VIDEO};
    for (size_t k = 0; k < sizeof per_slot / sizeof *per_slot; k++)
        if (LEN(b, per_slot[k]) != n_slots)
            return bad(STATE_SPECS[per_slot[k]].name);
    static const int per_room[] = {FLOOR_SINCE_MS, PREVIOUS_HOLDER, PREVIOUS_TURN_MS, ROOM_T_MS, RANKING_T_MS, RANKING_PHASE_MS, RANKED,
                                   PINNED, SHOWN, FORWARDED, FORWARDED_MAIN};
    for (size_t k = 0; k < sizeof per_room / sizeof *per_room; k++)
        if (LEN(b, per_room[k]) < n_all_rooms)
            return bad(STATE_SPECS[per_room[k]].name);
    return 0;
}

/* The layout's slots and rooms are the state's */
static int check_layout_in_state(const Py_buffer *b, const Py_buffer *s)
{
    const Py_ssize_t n = LEN(b, IDX), n_rooms = LEN(b, ROOMS);
    const Py_ssize_t n_slots = LEN(s, NOISE_FLOOR), n_all_rooms = LEN(s, HOLDER);
    const int64_t *rooms = P(int64_t, b, ROOMS), *idx = P(int64_t, b, IDX),
                  *members = P(int64_t, b, MEMBERS);
    for (Py_ssize_t p = 0; p < n_rooms; p++)
        if (rooms[p] >= n_all_rooms)
            return bad("rooms");
    for (Py_ssize_t i = 0; i < n; i++)
        if (idx[i] >= n_slots || members[i] >= n_slots)
            return bad("idx");
    return 0;
}

static PyObject *make_layout(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 1 + N_LAYOUT) {
        PyErr_Format(PyExc_TypeError, "layout takes %d arguments (%zd given)", 1 + N_LAYOUT,
                     nargs);
        return NULL;
    }
    int floor_on = PyObject_IsTrue(args[0]);
    if (floor_on < 0)
        return NULL;
    Layout *o = PyObject_New(Layout, &LayoutType);
    if (o == NULL)
        return NULL;
    memset(o->held, 0, sizeof o->held);
    o->floor_on = floor_on;
    o->checked = 0;
    if (acquire("layout", LAYOUT_SPECS, N_LAYOUT, args + 1, o->buf, o->held) < 0
        || check_layout(o->buf) < 0) {
        Py_DECREF(o);
        return NULL;
    }
    return (PyObject *)o;
}

static PyObject *make_state(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != N_STATE) {
        PyErr_Format(PyExc_TypeError, "state takes %d arguments (%zd given)", N_STATE, nargs);
        return NULL;
    }
    State *o = PyObject_New(State, &StateType);
    if (o == NULL)
        return NULL;
    memset(o->held, 0, sizeof o->held);
    o->serial = ++states_made;
    if (acquire("state", STATE_SPECS, N_STATE, args, o->buf, o->held) < 0
        || check_state(o->buf) < 0) {
        Py_DECREF(o);
        return NULL;
    }
    return (PyObject *)o;
}

/* ------------------------------------------------------------------ events */
/* The events of a step are made here, in C: through Python (dsp.events.many) a
 * SpeakingChange cost ~1 us and an ActiveSpeakersUpdate ~2 us, and hundreds of rooms can
 * change their ranking on one tick. Each is made as object.__new__(cls) followed by its
 * fields' slots, what dsp.events.many does; the classes are dsp.events', registered once
 * by dsp/engine.py (event_types). */
enum { SPEAKING_CHANGE, ACTIVE_SPEAKERS, N_EVENT_TYPES };
#define MAX_FIELDS 6
static const int N_FIELDS[N_EVENT_TYPES] = {4, 6};
static PyTypeObject *event_type[N_EVENT_TYPES];
static PyMemberDef *event_field[N_EVENT_TYPES][MAX_FIELDS];

static PyObject *set_event_types(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2 * N_EVENT_TYPES) {
        PyErr_SetString(PyExc_TypeError, "event_types(SpeakingChange, its field names, "
                        "ActiveSpeakersUpdate, its field names)");
        return NULL;
    }
    for (int k = 0; k < N_EVENT_TYPES; k++) {
        PyObject *cls = args[2 * k], *names = args[2 * k + 1];
        if (!PyType_Check(cls) || !PyTuple_Check(names)
            || PyTuple_GET_SIZE(names) != N_FIELDS[k]) {
            PyErr_Format(PyExc_TypeError, "event_types: a class and its %d field names",
                         N_FIELDS[k]);
            return NULL;
        }
        PyMemberDef *fields[MAX_FIELDS];
        for (int f = 0; f < N_FIELDS[k]; f++) {
            /* a slot of the class (a member descriptor holding any object) */
            PyObject *d = PyObject_GetAttr(cls, PyTuple_GET_ITEM(names, f));
            if (d == NULL)
                return NULL;
            const int slot = Py_IS_TYPE(d, &PyMemberDescr_Type)
                             && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX
                             && !(((PyMemberDescrObject *)d)->d_member->flags & READONLY);
            fields[f] = slot ? ((PyMemberDescrObject *)d)->d_member : NULL;
            Py_DECREF(d); /* the class keeps it */
            if (!slot) {
                PyErr_Format(PyExc_TypeError, "event_types: %R is not a slot of %R",
                             PyTuple_GET_ITEM(names, f), cls);
                return NULL;
            }
        }
        Py_INCREF(cls);
        Py_XSETREF(event_type[k], (PyTypeObject *)cls);
        memcpy(event_field[k], fields, sizeof fields);
    }
    Py_RETURN_NONE;
}

/* An event of kind k with these field values (new references, all taken, any NULL: an
 * error is set) */
static PyObject *make_event(int k, PyObject **values)
{
    PyTypeObject *cls = event_type[k];
    PyObject *o = NULL;
    int ok = cls != NULL;
    for (int f = 0; ok && f < N_FIELDS[k]; f++)
        ok = values[f] != NULL;
    if (ok)
        o = cls->tp_alloc(cls, 0);
    for (int f = 0; f < N_FIELDS[k]; f++) {
        if (o != NULL && PyMember_SetOne((char *)o, event_field[k][f], values[f]) < 0)
            Py_CLEAR(o);
        Py_XDECREF(values[f]);
    }
    if (cls == NULL && !PyErr_Occurred())
        PyErr_SetString(PyExc_RuntimeError, "advance: event_types() was not called");
    return o;
}

/* ------------------------------------------------------------------ the kernel */
static PyObject *advance(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != 2 + N_WAVE) {
        PyErr_Format(PyExc_TypeError, "advance takes %d arguments (%zd given)", 2 + N_WAVE,
                     nargs);
        return NULL;
    }
    if (!Py_IS_TYPE(args[0], &LayoutType) || !Py_IS_TYPE(args[1], &StateType)) {
        PyErr_SetString(PyExc_TypeError, "advance: a Layout and a State come first");
        return NULL;
    }
    Layout *lay = (Layout *)args[0];
    const State *sta = (const State *)args[1];
    const Py_buffer *L = lay->buf, *S = sta->buf;
    Py_buffer W[N_WAVE];
    int held[N_WAVE] = {0};
    PyObject *result = NULL, *speaking_changes = NULL, *rankings = NULL;
    void *scratch = NULL;
    if (acquire("advance", WAVE_SPECS, N_WAVE, args + 2, W, held) < 0)
        goto done;
    if (lay->checked != sta->serial) {
        if (check_layout_in_state(L, S) < 0)
            goto done;
        lay->checked = sta->serial;
    }
    const int floor_on = lay->floor_on;

    const Py_ssize_t n = LEN(L, IDX);
    const int64_t *idx = P(int64_t, L, IDX), *pos = P(int64_t, L, POS);
    const float *dt = P(float, L, DT);
    const int64_t *level_slots = P(int64_t, W, LEVEL_SLOTS);
    const float *level = P(float, W, LEVEL);
    const int8_t *voice = P(int8_t, W, VOICE);
    const uint8_t *present = held[PRESENT] ? P(uint8_t, W, PRESENT) : NULL;
    if (present == NULL) {
        /* the steady state: every participant has a level, in slot order; else the
         * caller gathers the frames (-1, nothing changed) */
        const int same = LEN(W, LEVEL_SLOTS) == n
                         && memcmp(level_slots, idx, (size_t)n * sizeof *idx) == 0;
        if (!same) {
            result = Py_NewRef(Py_None);
            goto done;
        }
    }

    const Py_ssize_t n_rooms = LEN(L, ROOMS);
    const Py_ssize_t n_slots = LEN(S, NOISE_FLOOR);
    const int64_t *rooms = P(int64_t, L, ROOMS), *t_ms = P(int64_t, W, T_MS),
                  *duration_ms = P(int64_t, L, DURATION_MS);
    const double *tun = P(double, L, TUN), *alpha = P(double, L, ALPHA),
                 *room_tun = P(double, L, ROOM_TUN);
    const int64_t *members = P(int64_t, L, MEMBERS),
                  *member_start = P(int64_t, L, MEMBER_START);
    float *noise_floor = P(float, S, NOISE_FLOOR), *speech_level = P(float, S, SPEECH_LEVEL),
          *level_smooth = P(float, S, LEVEL_SMOOTH), *activity = P(float, S, ACTIVITY);
    uint8_t *speaking = P(uint8_t, S, SPEAKING);
    int64_t *last_active_ms = P(int64_t, S, LAST_ACTIVE_MS),
            *run_start_ms = P(int64_t, S, RUN_START_MS), *onset_ms = P(int64_t, S, ONSET_MS),
            *loud_since_ms = P(int64_t, S, LOUD_SINCE_MS);
    float *evidence_ms = P(float, S, EVIDENCE_MS), *voiced_run_ms = P(float, S, VOICED_RUN_MS),
          *last_level = P(float, S, LAST_LEVEL), *modulation_db = P(float, S, MODULATION_DB),
          *follow_db = P(float, S, FOLLOW_DB), *move_db = P(float, S, MOVE_DB),
          *impulse_peak_dbov = P(float, S, IMPULSE_PEAK_DBOV),
          *impulse_low_dbov = P(float, S, IMPULSE_LOW_DBOV);
    uint8_t *impulse = P(uint8_t, S, IMPULSE);
    const uint8_t *muted = P(uint8_t, S, MUTED);
    uint8_t *silent = P(uint8_t, S, SILENT);
    int64_t *last_frame_ms = P(int64_t, S, LAST_FRAME_MS);
    uint8_t *reported_speaking = P(uint8_t, S, REPORTED_SPEAKING);
    int64_t *reported_ms = P(int64_t, S, REPORTED_MS);
    const int64_t *joined = P(int64_t, S, JOINED);
    const uint8_t *has_held = P(uint8_t, S, HAS_HELD);
    float *echo_peak_dbov = P(float, S, ECHO_PEAK_DBOV),
          *echo_coupling_db = P(float, S, ECHO_COUPLING_DB);
    int64_t *echo_peak_ms = P(int64_t, S, ECHO_PEAK_MS);
    const int32_t *holder = P(int32_t, S, HOLDER),
                  *previous_holder = P(int32_t, S, PREVIOUS_HOLDER);
    const int64_t *floor_since_ms = P(int64_t, S, FLOOR_SINCE_MS),
                  *previous_turn_ms = P(int64_t, S, PREVIOUS_TURN_MS);
    int64_t *room_t_ms = P(int64_t, S, ROOM_T_MS), *ranking_t_ms = P(int64_t, S, RANKING_T_MS);
    const int64_t *ranking_phase_ms = P(int64_t, S, RANKING_PHASE_MS);
    int64_t *ranked = P(int64_t, S, RANKED);
    const int32_t *slot_room = P(int32_t, S, SLOT_ROOM);
    const uint8_t *video = P(uint8_t, S, VIDEO);
    const int32_t *pinned = P(int32_t, S, PINNED), *shown = P(int32_t, S, SHOWN);
    const int64_t *forwarded = P(int64_t, S, FORWARDED),
                  *forwarded_main = P(int64_t, S, FORWARDED_MAIN);
    int64_t *t_end_room = P(int64_t, L, T_END_ROOM);
    uint8_t *live = P(uint8_t, L, LIVE), *active = P(uint8_t, L, ACTIVE);
    int64_t *started = P(int64_t, L, STARTED);
    uint8_t *refresh = P(uint8_t, L, REFRESH);
    int64_t *reports = P(int64_t, L, REPORTS), *changes = P(int64_t, L, CHANGES),
            *due = P(int64_t, L, DUE);
    const Py_ssize_t width = S[RANKED].shape[1];
    const Py_ssize_t fwidth = S[FORWARDED].shape[1];

    /* the wave's lengths, and the slots the state names per room (Python sets them
     * between calls), all checked before anything is written */
    if (LEN(W, LEVEL) < n || LEN(W, VOICE) < n || (present && LEN(W, PRESENT) < n)) {
        bad("level, voice or present");
        goto done;
    }
    if (LEN(W, T_MS) < n_rooms) {
        bad("t_ms");
        goto done;
    }
    for (Py_ssize_t p = 0; p < n_rooms; p++) {
        const int64_t r = rooms[p];
        if (holder[r] >= n_slots || pinned[r] >= n_slots || shown[r] >= n_slots
            || previous_holder[r] >= n_slots) {
            bad("holder/pinned/shown/previous_holder");
            goto done;
        }
        for (Py_ssize_t j = 0; j < fwidth; j++)
            if (forwarded[r * fwidth + j] >= n_slots) {
                bad("forwarded");
                goto done;
            }
    }
/* tuning and coefficients by room (p: the room's position in the wave): the same for all
 * of a room's participants, so the tables have a row per room, not per participant, and
 * a room's row (a few cache lines) stays in cache while its participants stream by */
#define TUNV(row, p) tun[(p) * N_TUN + (row)]
#define ALPHAV(row, p) alpha[(p) * N_ALPHA + (row)]
#define ROOMV(row, p) room_tun[(p) * N_ROOM_TUN + (row)]

    /* scratch: per room of the wave, and the candidates of one room's ranking */
    size_t rsz = (size_t)(n_rooms > 0 ? n_rooms : 1);
    size_t bytes = rsz * (sizeof(double) + 6 * sizeof(float) + 5 * sizeof(int64_t) + 1)
                   + (size_t)(n > 0 ? n : 1) * sizeof(int64_t)
                   + (size_t)(width > 0 ? width : 1) * sizeof(int64_t);
    scratch = PyMem_Malloc(bytes);
    if (scratch == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    double *score = (double *)scratch;
    int64_t *win = (int64_t *)(score + rsz);
    int64_t *count = win + rsz;
    int64_t *hold = count + rsz;
    int64_t *cand = hold + rsz;
    int64_t *row = cand + (n > 0 ? n : 1);
    float *best = (float *)(row + (width > 0 ? width : 1));
    float *win_ev = best + rsz;
    float *win_lv = win_ev + rsz;
    int64_t *loud_i = (int64_t *)(win_lv + rsz);
    int64_t *n_top = loud_i + rsz;
    float *loud_lv = (float *)(n_top + rsz);
    float *loud_jump = loud_lv + rsz;
    float *second_lv = loud_jump + rsz;
    uint8_t *outlasted = (uint8_t *)(second_lv + rsz);

    for (Py_ssize_t p = 0; p < n_rooms; p++)
        t_end_room[p] = t_ms[p] + duration_ms[p];

    /* who takes part in this frame (one without a frame sits it out until
     * no_audio_timeout_ms after its last: a short gap in its packets), and the loudest
     * live frame of each room (the last of equals) with its jump from its participant's
     * previous frame: what a leak into another microphone follows (activity._without_leaks) */
    for (Py_ssize_t p = 0; p < n_rooms; p++) {
        loud_i[p] = -1;
        loud_lv[p] = -INFINITY;
        /* and the second loudest level, and how many at the loudest: the echo's reference */
        second_lv[p] = -INFINITY;
        n_top[p] = 0;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t s = idx[i];
        const int64_t p = pos[i];
        live[i] = (present == NULL || present[i])
                  || (double)(t_end_room[p] - last_frame_ms[s]) > TUNV(NO_AUDIO_TIMEOUT, p);
        if (!live[i])
            continue;
        const float lv = muted[s] ? SILENCE : level[i];
        {   /* (selects, not branches: levels are in no order) */
            const float top = loud_lv[p], second = second_lv[p];
            const int above = lv > top, equal = lv == top;
            second_lv[p] = above ? top : (equal ? second : maxf_(second, lv));
            n_top[p] = above ? 1 : n_top[p] + equal;
        }
        if (lv >= loud_lv[p]) {
            loud_lv[p] = lv;
            loud_i[p] = i;
        }
    }
    for (Py_ssize_t p = 0; p < n_rooms; p++)
        loud_jump[p] = loud_i[p] < 0 ? 0.0f : loud_lv[p] - last_level[idx[loud_i[p]]];

    /* activity (activity.update) */
    Py_ssize_t n_reports = 0, n_started = 0, n_changes = 0, n_due = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t s = idx[i];
        const int64_t p = pos[i];
        const int64_t t_end = t_end_room[p];
        float lv = level[i];
        int64_t v = voice[i];
        const int here = present == NULL || present[i];
        if (here)
            last_frame_ms[s] = t_end;
        if (muted[s]) {
            lv = SILENCE;
            v = 0;
        }
        if (!live[i]) {
            active[i] = 0;
            continue;
        }
        const float dt_i = dt[p];
        /* noise floor: a new participant's starts at its first sounding frame */
        float floor_ = noise_floor[s];
        const int sounding = lv > SILENCE;
        if (isnan(floor_) && sounding)
            floor_ = minf_(lv, INITIAL_FLOOR);
        int voiced;
        if (v < 0)
            voiced = (double)(float)(lv - floor_) >= TUNV(ENERGY_SNR, p);
        else
            voiced = v > 0;
        int speech_like = voiced && sounding
                          && (double)(float)(lv - floor_) >= TUNV(MIN_SNR, p)
                          && (double)lv >= TUNV(MIN_LEVEL, p);
        /* another participant's voice leaking into this microphone is no speech of its own */
        if (speech_like && loud_i[p] != i) {
            const float jump = lv - last_level[s], jump_ref = loud_jump[p];
            const double a = ALPHAV(A_MODULATION, p);
            const float fo32 = follow_db[s], mv32 = move_db[s];
            const float fo = (float)((double)fo32
                                     + a * (double)(float)(fabsf(jump - jump_ref) - fo32));
            const float mv = (float)((double)mv32 + a * (double)(float)(fabsf(jump_ref) - mv32));
            follow_db[s] = fo;
            move_db[s] = mv;
            if ((double)(float)(loud_lv[p] - lv) >= LEAK_MIN_DB && (double)mv >= LEAK_MIN_MOVE_DB
                && (double)fo < LEAK_FOLLOW_SHARE * (double)mv)
                speech_like = 0;
        }
        /* ...nor is the others' echo in it (activity._without_echo) */
        {
            const float others = (lv == loud_lv[p] && n_top[p] == 1) ? second_lv[p] : loud_lv[p];
            const float peak = echo_peak_dbov[s];
            const double since = (double)(t_end - echo_peak_ms[s]);
            const double decayed = (double)peak
                - ECHO_DECAY_DB_PER_MS * maxd_(0.0, since - ECHO_HOLD_MS);
            /* (selects, not branches: which way each goes depends on the audio) */
            const int louder = (double)others >= decayed;
            echo_peak_dbov[s] = louder ? others : peak;
            echo_peak_ms[s] = louder ? t_end : echo_peak_ms[s];
            const double reference = louder ? (double)others : decayed;
            const float coupling0 = echo_coupling_db[s];
            const int listening = ((int64_t)holder[rooms[p]] != s) & sounding
                & ((double)others >= ECHO_REFERENCE_MIN_DBOV)
                & ((double)(float)(others - lv) >= ECHO_REFERENCE_GAP_DB);
            const double step = ((double)lv - reference > (double)coupling0)
                                ? ECHO_COUPLING_UP_DB : -ECHO_COUPLING_DOWN_DB;
            const float coupling = listening ? (float)((double)coupling0 + step) : coupling0;
            echo_coupling_db[s] = coupling;
            const double expected = reference + (double)coupling;
            if (speech_like && (double)lv <= expected + ECHO_MARGIN_DB
                && expected - (double)floor_ >= ECHO_AUDIBLE_DB)
                speech_like = 0;
        }
        /* the participant's own speech level, and whether this frame reaches near it */
        if (speech_like) {
            float sp = speech_level[s];
            if (isnan(sp))
                sp = minf_(lv, INITIAL_SPEECH_MAX);
            const double al = pick(lv > sp, ALPHAV(A_SPEECH_RISE, p), ALPHAV(A_SPEECH_FALL, p));
            const double sp64 = (double)sp + al * (double)(float)(lv - sp);
            speech_level[s] = (float)sp64;
            speech_like = (double)lv >= sp64 - TUNV(SPEECH_MARGIN, p);
        }
        float run = 0.0f;
        if (speech_like) {
            const float run_before = voiced_run_ms[s];
            /* float32 |jump| - mod (numpy: float32 arrays), float64 step (a float64
             * coefficient), rounded to float32 when stored */
            const float mod32 = modulation_db[s];
            double mod = (double)mod32
                + ALPHAV(A_MODULATION, p) * (double)(float)(fabsf(lv - last_level[s]) - mod32);
            const int onset = run_before == 0 && activity[s] < ONSET_RESET;
            if (onset)
                mod = (double)ONSET_MOD;
            modulation_db[s] = (float)mod;
            /* an impulse (dsp.activity._impulses): a sound that starts at its loudest and
             * falls IMPULSE_DROP_DB within IMPULSE_JUDGED_MS; float32 as numpy's */
            const int early = (double)run_before < IMPULSE_ONSET_MS;
            int imp = impulse[s] && run_before != 0;
            const int again = imp && lv >= impulse_low_dbov[s] + (float)IMPULSE_RECOVER_DB;
            imp = imp && !again;
            float peak = impulse_peak_dbov[s];
            peak = onset ? lv : run_before == 0 ? -INFINITY : early ? maxf_(peak, lv) : peak;
            if (again || (!early && lv > peak))
                peak = -INFINITY;
            if (!early && (double)run_before <= IMPULSE_JUDGED_MS
                && lv <= peak - (float)IMPULSE_DROP_DB)
                imp = 1;
            impulse_peak_dbov[s] = peak;
            impulse_low_dbov[s] = early ? lv : minf_(impulse_low_dbov[s], lv);
            impulse[s] = (uint8_t)imp;
            run = (float)(run_before + dt_i);
        }
        voiced_run_ms[s] = run;
        const int is_active = speech_like && (double)run >= TUNV(MIN_RUN, p);
        const int confirming = is_active && (double)(float)(run - dt_i) < TUNV(MIN_RUN, p);
        const float step = confirming ? run : dt_i;
        last_level[s] = lv;
        if (sounding)
            noise_floor[s] = (float)toward(floor_, lv, ALPHAV(A_FLOOR_RISE, p),
                                           ALPHAV(A_FLOOR_FALL, p));
        const float lvs = maxf_(lv, SMOOTH_FLOOR);
        level_smooth[s] = (float)toward(level_smooth[s], lvs, ALPHAV(A_LEVEL_ATTACK, p),
                                        ALPHAV(A_LEVEL_RELEASE, p));
        const float act = activity[s];
        const float target = is_active ? 1.0f : 0.0f;
        double new_act;
        if (confirming) { /* a confirmed run's frames, all at once */
            const double al = -expm1((double)(-step) / maxd_(TUNV(ACT_ATTACK_MS, p), 1e-3));
            new_act = (double)act + al * (double)(float)(target - act);
        } else {
            new_act = toward(act, target, ALPHAV(A_ACT_ATTACK, p), ALPHAV(A_ACT_RELEASE, p));
        }
        if (!sounding)
            new_act = 0.0;
        activity[s] = (float)new_act;
        silent[s] = !sounding;
        if (is_active && act < ONSET_RESET)
            run_start_ms[s] = t_end - (int64_t)step;
        if (is_active)
            last_active_ms[s] = t_end;
        active[i] = (uint8_t)is_active;
        const int was = speaking[s] != 0;
        const int now = sounding && ((was && new_act > TUNV(SPEAKING_OFF, p))
                                     || (!was && new_act >= TUNV(SPEAKING_ON, p)));
        speaking[s] = (uint8_t)now;
        if (now && !was) {
            onset_ms[s] = run_start_ms[s];
            started[n_started++] = i;
        }
        /* SpeakingChanged: at most one per speaking_interval_ms; a stop by silence at once */
        if (now != (reported_speaking[s] != 0)
            && ((double)(t_end - reported_ms[s]) >= TUNV(SPEAKING_INTERVAL, p)
                || (!now && !sounding))) {
            reported_speaking[s] = (uint8_t)now;
            reported_ms[s] = t_end;
            reports[n_reports++] = i;
        }
    }

    /* forwarding.unchanged: whether a room's only starter leaves its set as it is */
    if (n_started) {
        memset(count, 0, rsz * sizeof *count);
        for (Py_ssize_t j = 0; j < n_started; j++)
            count[pos[started[j]]] += 1;
        for (Py_ssize_t j = 0; j < n_started; j++) {
            const int64_t i = started[j];
            const int64_t p = pos[i];
            refresh[j] = 1;
            if (count[p] != 1)
                continue;
            const int64_t r = rooms[p];
            const int64_t s = idx[i];
            const int64_t main_ = pinned[r] >= 0 ? pinned[r] : shown[r];
            if (forwarded_main[r] != main_)
                continue;
            int stay = 1, main_in = 0;
            int64_t listed = 0;
            for (Py_ssize_t k = 0; k < fwidth; k++) {
                const int64_t m = forwarded[r * fwidth + k];
                if (m >= 0) {
                    listed += 1;
                    stay = stay && slot_room[m] == r && video[m];
                }
                main_in = main_in || m == main_;
            }
            if (stay && (main_ < 0 || main_in || !video[main_ > 0 ? main_ : 0])
                && (fwidth > 0 && s == forwarded[r * fwidth] ? 1 : !video[s])
                && (double)listed <= ROOMV(FORWARDING_SIZE, p))
                refresh[j] = 0;
        }
    }

    if (floor_on) {
        /* per room: its holder, the level to beat (the holder's smoothed level after this
         * frame), and its takeover so far */
        for (Py_ssize_t p = 0; p < n_rooms; p++) {
            const int32_t h = holder[rooms[p]];
            hold[p] = h;
            score[p] = (h < 0 || muted[h] || silent[h]) ? -INFINITY : (double)level_smooth[h];
            best[p] = 0.0f;
            outlasted[p] = 0;
            win[p] = -1;
            win_ev[p] = 0.0f;
            win_lv[p] = 0.0f;
        }
        /* One pass for both steps below: a participant's takeover reads only its own
         * evidence and state, and its holder's, which the evidence step leaves alone */
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!live[i])
                continue;
            const int64_t s = idx[i];
            const int64_t p = pos[i];
            const int64_t h = hold[p];
            const int64_t t_end = t_end_room[p];
            /* floor evidence: gathered by a speaking challenger louder than the holder by
             * the margin, on its speech frames; drained otherwise */
            float e = evidence_ms[s];
            /* talk over the holder counts from the first run within the overlap margin */
            if (!speaking[s])
                loud_since_ms[s] = NOT_LOUD_MS;
            else if (active[i] && loud_since_ms[s] == NOT_LOUD_MS
                     && (double)level_smooth[s] >= score[p] - ROOMV(OVERLAP_MARGIN, p))
                loud_since_ms[s] = t_end - (int64_t)voiced_run_ms[s];
            if (speaking[s] && s != h && !muted[s]
                && (double)level_smooth[s] > score[p] + TUNV(SWITCH_MARGIN, p)) {
                if (active[i]) {
                    const float run = voiced_run_ms[s];
                    const float speech_ms =
                        (double)(float)(run - dt[p]) < TUNV(MIN_RUN, p) ? run : dt[p];
                    e = evidence_ms[s] = (float)(e + speech_ms);
                }
            } else if (e != 0) {
                e = evidence_ms[s] = s == h ? 0.0f
                    : (float)maxd_((double)e - TUNV(EVIDENCE_DECAY, p) * (double)dt[p], 0.0);
            }

            /* takeovers: the recent, speech-like challenger with most evidence, if enough */
            const double min_mod = TUNV(MIN_MODULATION, p);
            if (!(e != 0 && (double)(t_end - last_active_ms[s]) <= TUNV(TAKEOVER_RECENCY, p)
                  && ((double)modulation_db[s] >= min_mod || h < 0
                      || (double)modulation_db[h] < min_mod) && !impulse[s]))
                e = 0.0f;
            /* in a large room, one who has never held its floor needs newcomer_speech_ms
             * more */
            if (e != 0 && !has_held[s]
                && member_start[p + 1] - member_start[p] >= NEWCOMER_ROOM_SIZE)
                e = (float)maxd_((double)e - ROOMV(NEWCOMER_SPEECH, p), 0.0);
            /* a room changes hands only on evidence (best > 0, or an interrupter with
             * evidence that outlasted the holder), so only participants with evidence
             * can win it: the others (most) are done */
            if (e == 0)
                continue;
            if (e > best[p])
                best[p] = e;
            if (e != 0 && h >= 0 && (double)e >= ROOMV(MIN_SPEECH, p)
                && (double)(t_end - last_active_ms[h]) >= ROOMV(OUTLAST, p)
                && loud_since_ms[s] != NOT_LOUD_MS
                && (double)(t_end - loud_since_ms[s] + (t_end - last_active_ms[h]))
                   >= ROOMV(OUTLAST_TOTAL, p))
                outlasted[p] = 1;
            /* the room's winner so far: most evidence, then the loudest, then the first;
             * selected without branches (the loudness order is a coin toss per frame) */
            const float lv = level_smooth[s];
            const int take = (win[p] < 0) | (e > win_ev[p])
                             | ((e == win_ev[p]) & (lv > win_lv[p]));
            win[p] = take ? s : win[p];
            win_ev[p] = take ? e : win_ev[p];
            win_lv[p] = take ? lv : win_lv[p];
        }
        for (Py_ssize_t p = 0; p < n_rooms; p++) {
            const int64_t r = rooms[p];
            const int32_t h = holder[r];
            const double holder_silent = h < 0 ? 0.0 : (double)(t_end_room[p] - last_active_ms[h]);
            /* a quick exchange: the previous holder answering a short turn that answered
             * its own needs only reply_hold_ms of the holder's silence */
            double hold_ms = ROOMV(HOLD, p);
            /* a long turn: its pauses are longer, and so is its hold */
            {
                const double turn = (double)(t_end_room[p] - floor_since_ms[r]);
                double ramp = (turn - ROOMV(LONG_TURN, p)) / maxd_(ROOMV(LONG_TURN, p), 1.0);
                ramp = ramp < 0.0 ? 0.0 : (ramp > 1.0 ? 1.0 : ramp);
                hold_ms = hold_ms + ROOMV(LONG_TURN_HOLD, p) * ramp;
            }
            const int32_t prev = previous_holder[r];
            if (prev >= 0 && (double)(t_end_room[p] - floor_since_ms[r]) < ROOMV(REPLY_TURN, p)
                && (double)previous_turn_ms[r] < ROOMV(REPLY_TURN, p) && evidence_ms[prev] > 0
                && run_start_ms[prev] > last_active_ms[h < 0 ? 0 : h])
                hold_ms = ROOMV(REPLY_HOLD, p) < hold_ms ? ROOMV(REPLY_HOLD, p) : hold_ms;
            const int quiet = h < 0 || muted[h]
                || (silent[h] && holder_silent >= ROOMV(SILENT_HOLD, p))
                || (holder_silent >= hold_ms && voiced_run_ms[h] == 0);
            const double need = quiet ? ROOMV(MIN_SPEECH, p) : ROOMV(INTERRUPT, p);
            if ((best[p] > 0 && (double)best[p] >= need) || outlasted[p]) {
                changes[2 * n_changes] = p;
                changes[2 * n_changes + 1] = win[p];
                n_changes++;
            }
        }
    }

    /* ActiveSpeakers: each room due a check (at most one per interval, the first shifted
     * by the room's phase) is ranked; ``due`` gets those whose ranking changed */
    for (Py_ssize_t p = 0; p < n_rooms; p++) {
        const int64_t r = rooms[p];
        room_t_ms[r] = t_end_room[p];
        const double interval = ROOMV(AS_INTERVAL, p);
        if (!((double)(t_end_room[p] - ranking_t_ms[r]) >= interval))
            continue;
        const int first = ranking_t_ms[r] == NEVER_MS && (int64_t)interval > 0;
        ranking_t_ms[r] = t_end_room[p];
        if (first)
            ranking_t_ms[r] -= pymod(ranking_phase_ms[r], (int64_t)interval);
        /* the room's top places, by selection (places are few) */
        Py_ssize_t m = 0;
        for (int64_t j = member_start[p]; j < member_start[p + 1]; j++) {
            const int64_t s = members[j];
            if (speaking[s] || last_active_ms[s] > NEVER_MS)
                cand[m++] = s;
        }
        int64_t places = (int64_t)ROOMV(AS_PLACES, p);
        if (m < places)
            places = m;
        if (places > width)
            places = width;
        for (Py_ssize_t j = 0; j < width; j++)
            row[j] = NOT_RANKED;
        for (int64_t place = 0; place < places; place++) {
            int64_t b = place;
            for (int64_t j = place + 1; j < m; j++) {
                const int64_t x = cand[j], y = cand[b];
                int before;
                if (speaking[x] != speaking[y])
                    before = speaking[x] != 0;
                else if (speaking[x] && level_smooth[x] != level_smooth[y])
                    before = level_smooth[x] > level_smooth[y];
                else if (last_active_ms[x] != last_active_ms[y])
                    before = last_active_ms[x] > last_active_ms[y];
                else
                    before = joined[x] < joined[y];
                if (before)
                    b = j;
            }
            const int64_t s = cand[b];
            cand[b] = cand[place];
            cand[place] = s;
            row[place] = 2 * s + (speaking[s] != 0);
        }
        int changed = 0;
        for (Py_ssize_t j = 0; j < width; j++)
            if (ranked[r * width + j] != row[j]) {
                changed = 1;
                ranked[r * width + j] = row[j];
            }
        if (changed)
            due[n_due++] = p;
    }

    /* the events: SpeakingChange per report, ActiveSpeakersUpdate per new ranking (the
     * places of the ranking's row that are listed, as Engine._step_numpy makes them) */
    speaking_changes = PyList_New(n_reports);
    rankings = PyList_New(n_due);
    if (speaking_changes == NULL || rankings == NULL)
        goto done;
    for (Py_ssize_t j = 0; j < n_reports; j++) {
        const int64_t i = reports[j], p = pos[i], s = idx[i];
        PyObject *v[4] = {PyLong_FromLongLong(rooms[p]), PyLong_FromLongLong(t_end_room[p]),
                          PyLong_FromLongLong(s), PyBool_FromLong(speaking[s])};
        PyObject *e = make_event(SPEAKING_CHANGE, v);
        if (e == NULL)
            goto done;
        PyList_SET_ITEM(speaking_changes, j, e);
    }
    for (Py_ssize_t j = 0; j < n_due; j++) {
        const int64_t p = due[j], r = rooms[p];
        const int64_t *places = ranked + r * width;
        Py_ssize_t listed = 0;
        for (Py_ssize_t k = 0; k < width; k++)
            listed += places[k] != NOT_RANKED;
        PyObject *v[6] = {PyLong_FromLongLong(r), PyLong_FromLongLong(t_end_room[p]),
                          PyTuple_New(listed), PyTuple_New(listed), PyTuple_New(listed),
                          PyTuple_New(listed)};
        for (Py_ssize_t k = 0; k < listed && v[2] && v[3] && v[4] && v[5]; k++) {
            const int64_t x = places[k];
            const int64_t s = x != NOT_RANKED ? x >> 1 : 0;
            if (s < 0 || s >= n_slots) {
                for (int f = 0; f < 6; f++)
                    Py_XDECREF(v[f]);
                bad("ranked");
                goto done;
            }
            PyTuple_SET_ITEM(v[2], k, PyLong_FromLongLong(s));
            PyTuple_SET_ITEM(v[3], k, PyFloat_FromDouble((double)level_smooth[s]));
            PyTuple_SET_ITEM(v[4], k, PyBool_FromLong((x & 1) == 1));
            PyTuple_SET_ITEM(v[5], k, PyFloat_FromDouble((double)activity[s]));
            if (!PyTuple_GET_ITEM(v[2], k) || !PyTuple_GET_ITEM(v[3], k)
                || !PyTuple_GET_ITEM(v[5], k)) {
                for (int f = 2; f < 6; f++)
                    Py_CLEAR(v[f]); /* an item failed: make_event sees a NULL */
            }
        }
        /* ints, floats and bools only: no cycle can pass through these tuples, so they
         * leave the garbage collector's lists now (as CPython's collector would at its
         * first look): a ranking tick's thousands of tuples do not fill the young
         * generation, nor get promoted into the old one */
        for (int f = 2; f < 6; f++)
            if (v[f] != NULL)
                PyObject_GC_UnTrack(v[f]);
        PyObject *e = make_event(ACTIVE_SPEAKERS, v);
        if (e == NULL)
            goto done;
        PyList_SET_ITEM(rankings, j, e);
    }
    result = Py_BuildValue("(OnnO)", speaking_changes, n_started, n_changes, rankings);

done:
    Py_XDECREF(speaking_changes);
    Py_XDECREF(rankings);
    PyMem_Free(scratch);
    release(W, held, N_WAVE);
    return result;
}

static PyMethodDef methods[] = {
    {"layout", (PyCFunction)(void (*)(void))make_layout, METH_FASTCALL,
     "layout(floor_on, idx, pos, rooms, duration_ms, dt, tun, alpha, room_tun, members,\n"
     "       member_start, t_end_room, live, active, started, refresh, reports, changes,\n"
     "       due) -> Layout\n"
     "A wave layout's arrays (see dsp/engine.py: _Layout), checked and held for advance.\n"
     "dt and the tables tun (SLOT_FIELDS[:14]), alpha (activity.TIME_CONSTANTS) and\n"
     "room_tun (ROOM_FIELDS) have a row per room of the wave."},
    {"state", (PyCFunction)(void (*)(void))make_state, METH_FASTCALL,
     "state(noise_floor, speech_level, ..., forwarded_main) -> State\n"
     "The engine state's arrays (dsp/state.py: EngineState.kernel_arrays), checked and held\n"
     "for advance."},
    {"event_types", (PyCFunction)(void (*)(void))set_event_types, METH_FASTCALL,
     "event_types(SpeakingChange, its field names, ActiveSpeakersUpdate, its field names)\n"
     "The classes of the events advance makes (dsp.events'), their fields in order."},
    {"advance", (PyCFunction)(void (*)(void))advance, METH_FASTCALL,
     "advance(layout, state, level_slots, level, voice, present, t_ms)\n"
     "One frame of every participant of a wave (see dsp/engine.py). Returns (its\n"
     "SpeakingChange events, the number of starters, of floor changes, its\n"
     "ActiveSpeakersUpdate events), or None with nothing changed if level_slots (with\n"
     "present None) are not the layout's idx."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "dsp._kernel",
    "The engine's level path for one wave, compiled (see dsp/engine.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernel(void)
{
    if (PyType_Ready(&LayoutType) < 0 || PyType_Ready(&StateType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    /* the constants compiled in, so that a test can hold them to dsp's Python ones */
    PyObject *constants = Py_BuildValue(
        "{s:L,s:L,s:L,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d}", "NEVER_MS", (long long)NEVER_MS,
        "NOT_LOUD_MS", (long long)NOT_LOUD_MS,
        "NOT_RANKED", (long long)NOT_RANKED, "SILENCE_DBOV", (double)SILENCE,
        "SMOOTH_FLOOR_DBOV", (double)SMOOTH_FLOOR, "INITIAL_FLOOR_DBOV", (double)INITIAL_FLOOR,
        "INITIAL_SPEECH_MAX_DBOV", (double)INITIAL_SPEECH_MAX,
        "ONSET_RESET_ACTIVITY", (double)ONSET_RESET, "ONSET_MODULATION_DB", (double)ONSET_MOD,
        "LEAK_MIN_DB", LEAK_MIN_DB, "LEAK_FOLLOW_SHARE", LEAK_FOLLOW_SHARE,
        "LEAK_MIN_MOVE_DB", LEAK_MIN_MOVE_DB, "ECHO_HOLD_MS", ECHO_HOLD_MS,
        "ECHO_DECAY_DB_PER_MS", ECHO_DECAY_DB_PER_MS, "ECHO_COUPLING_UP_DB", ECHO_COUPLING_UP_DB,
        "ECHO_COUPLING_DOWN_DB", ECHO_COUPLING_DOWN_DB,
        "ECHO_REFERENCE_MIN_DBOV", ECHO_REFERENCE_MIN_DBOV,
        "ECHO_REFERENCE_GAP_DB", ECHO_REFERENCE_GAP_DB, "ECHO_MARGIN_DB", ECHO_MARGIN_DB,
        "ECHO_AUDIBLE_DB", ECHO_AUDIBLE_DB, "IMPULSE_ONSET_MS", IMPULSE_ONSET_MS,
        "IMPULSE_DROP_DB", IMPULSE_DROP_DB, "IMPULSE_JUDGED_MS", IMPULSE_JUDGED_MS,
        "IMPULSE_RECOVER_DB", IMPULSE_RECOVER_DB);
    if (PyModule_AddIntConstant(m, "ABI", ABI_VERSION) < 0 || constants == NULL
        || PyModule_AddObject(m, "CONSTANTS", constants) < 0) {
        Py_XDECREF(constants);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
