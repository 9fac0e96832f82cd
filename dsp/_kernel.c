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
#include <math.h>
#include <stdint.h>
#include <string.h>

#define ABI_VERSION 4

#define NEVER_MS (INT64_MIN / 4) /* dsp.state.NEVER_MS: np.iinfo(np.int64).min // 4 */
#define NOT_LOUD_MS (-NEVER_MS)  /* dsp.state.NOT_LOUD_MS */
#define NOT_RANKED ((int64_t)-1)
#define SILENCE (-127.0f)
#define SMOOTH_FLOOR (-100.0f)
#define INITIAL_FLOOR (-60.0f)
#define INITIAL_SPEECH_MAX (-20.0f)
#define ONSET_RESET (0.05f)
#define ONSET_MOD (3.0f)

/* rows of the per-slot tuning table (engine.SLOT_FIELDS order) */
enum { ENERGY_SNR, MIN_SNR, MIN_LEVEL, SPEECH_MARGIN, MIN_RUN, ACT_ATTACK_MS, SPEAKING_ON,
       SPEAKING_OFF, SWITCH_MARGIN, EVIDENCE_DECAY, TAKEOVER_RECENCY, MIN_MODULATION,
       SPEAKING_INTERVAL, NO_AUDIO_TIMEOUT, N_TUN };
/* rows of the coefficient table (activity.TIME_CONSTANTS order) */
enum { A_SPEECH_RISE, A_SPEECH_FALL, A_FLOOR_FALL, A_FLOOR_RISE, A_LEVEL_ATTACK,
       A_LEVEL_RELEASE, A_ACT_ATTACK, A_ACT_RELEASE, A_MODULATION, N_ALPHA };
/* rows of the per-room table (engine.ROOM_FIELDS order) */
enum { HOLD, MIN_SPEECH, INTERRUPT, OUTLAST, OUTLAST_TOTAL, SILENT_HOLD, AS_INTERVAL,
       AS_PLACES, FORWARDING_SIZE, OVERLAP_MARGIN, N_ROOM_TUN };

/* Python's min and max of two values (numba's too): the first unless the second is
 * strictly smaller (larger). */
static inline float minf_(float a, float b) { return b < a ? b : a; }
static inline float maxf_(float a, float b) { return b > a ? b : a; }
static inline double maxd_(double a, double b) { return b > a ? b : a; }

/* x + (up if y > x else down) * (y - x): float32 x, y; float64 result */
static inline double toward(float x, float y, double up, double down)
{
    float d = y - x;
    double a = d > 0 ? up : down;
    return a * (double)d + (double)x;
}

/* Python's (floored) modulo, for b > 0 */
static inline int64_t pymod(int64_t a, int64_t b)
{
    int64_t m = a % b;
    return (m != 0 && ((m < 0) != (b < 0))) ? m + b : m;
}

/* ------------------------------------------------------------------ arguments */
enum {
    IDX, POS, DT, LEVEL_SLOTS, LEVEL, VOICE, PRESENT, ROOMS, T_MS, DURATION_MS, FLOOR_ON,
    TUN, ALPHA, ROOM_TUN, MEMBERS, MEMBER_START,
    NOISE_FLOOR, SPEECH_LEVEL, LEVEL_SMOOTH, ACTIVITY, SPEAKING, LAST_ACTIVE_MS,
    RUN_START_MS, LOUD_SINCE_MS, ONSET_MS, EVIDENCE_MS, VOICED_RUN_MS, LAST_LEVEL, MODULATION_DB, MUTED,
    SILENT, LAST_FRAME_MS, REPORTED_SPEAKING, REPORTED_MS, JOINED, HOLDER,
    ROOM_T_MS, RANKING_T_MS, RANKING_PHASE_MS, RANKED,
    SLOT_ROOM, VIDEO, PINNED, SHOWN, FORWARDED, FORWARDED_MAIN,
    T_END_ROOM, LIVE, ACTIVE, STARTED, REFRESH, REPORTS, CHANGES, DUE,
    N_ARGS
};

/* kind: f float32, d float64, q int64, i int32, b int8, ? bool, o any object */
typedef struct { char kind; int ndim; int writable; int optional; const char *name; } Spec;

static const Spec SPECS[N_ARGS] = {
    [IDX] = {'q', 1, 0, 0, "idx"}, [POS] = {'q', 1, 0, 0, "pos"},
    [DT] = {'f', 1, 0, 0, "dt"}, [LEVEL_SLOTS] = {'q', 1, 0, 0, "level_slots"},
    [LEVEL] = {'f', 1, 0, 0, "level"}, [VOICE] = {'b', 1, 0, 0, "voice"},
    [PRESENT] = {'?', 1, 0, 1, "present"}, [ROOMS] = {'q', 1, 0, 0, "rooms"},
    [T_MS] = {'q', 1, 0, 0, "t_ms"}, [DURATION_MS] = {'q', 1, 0, 0, "duration_ms"},
    [FLOOR_ON] = {'o', 0, 0, 0, "floor_on"},
    [TUN] = {'d', 2, 0, 0, "tun"}, [ALPHA] = {'d', 2, 0, 0, "alpha"},
    [ROOM_TUN] = {'d', 2, 0, 0, "room_tun"}, [MEMBERS] = {'q', 1, 0, 0, "members"},
    [MEMBER_START] = {'q', 1, 0, 0, "member_start"},
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
    [MUTED] = {'?', 1, 0, 0, "muted"}, [SILENT] = {'?', 1, 1, 0, "silent"},
    [LAST_FRAME_MS] = {'q', 1, 1, 0, "last_frame_ms"},
    [REPORTED_SPEAKING] = {'?', 1, 1, 0, "reported_speaking"},
    [REPORTED_MS] = {'q', 1, 1, 0, "reported_ms"}, [JOINED] = {'q', 1, 0, 0, "joined"},
    [HOLDER] = {'i', 1, 0, 0, "holder"}, [ROOM_T_MS] = {'q', 1, 1, 0, "room_t_ms"},
    [RANKING_T_MS] = {'q', 1, 1, 0, "ranking_t_ms"},
    [RANKING_PHASE_MS] = {'q', 1, 0, 0, "ranking_phase_ms"},
    [RANKED] = {'q', 2, 1, 0, "ranked"}, [SLOT_ROOM] = {'i', 1, 0, 0, "slot_room"},
    [VIDEO] = {'?', 1, 0, 0, "video"}, [PINNED] = {'i', 1, 0, 0, "pinned"},
    [SHOWN] = {'i', 1, 0, 0, "shown"}, [FORWARDED] = {'q', 2, 0, 0, "forwarded"},
    [FORWARDED_MAIN] = {'q', 1, 0, 0, "forwarded_main"},
    [T_END_ROOM] = {'q', 1, 1, 0, "t_end_room"}, [LIVE] = {'?', 1, 1, 0, "live"},
    [ACTIVE] = {'?', 1, 1, 0, "active"}, [STARTED] = {'q', 1, 1, 0, "started"},
    [REFRESH] = {'?', 1, 1, 0, "refresh"}, [REPORTS] = {'q', 1, 1, 0, "reports"},
    [CHANGES] = {'q', 2, 1, 0, "changes"}, [DUE] = {'q', 1, 1, 0, "due"},
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

typedef struct {
    Py_buffer buf[N_ARGS];
    int held[N_ARGS];
} Args;

static void release(Args *a)
{
    for (int k = 0; k < N_ARGS; k++)
        if (a->held[k]) {
            PyBuffer_Release(&a->buf[k]);
            a->held[k] = 0;
        }
}

static int acquire(Args *a, PyObject *const *args)
{
    for (int k = 0; k < N_ARGS; k++) {
        const Spec *s = &SPECS[k];
        if (s->kind == 'o' || (s->optional && args[k] == Py_None))
            continue;
        int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (s->writable ? PyBUF_WRITABLE : 0);
        if (PyObject_GetBuffer(args[k], &a->buf[k], flags) < 0)
            return -1;
        a->held[k] = 1;
        if (!kind_matches(&a->buf[k], s->kind) || a->buf[k].ndim != s->ndim) {
            PyErr_Format(PyExc_TypeError, "advance: %s has format %s and %d dimensions, "
                         "not '%c' and %d", s->name, a->buf[k].format, a->buf[k].ndim,
                         s->kind, s->ndim);
            return -1;
        }
    }
    return 0;
}

#define LEN(k) (a.buf[k].shape[0])
#define P(type, k) ((type *)a.buf[k].buf)

static PyObject *bad(const char *what)
{
    PyErr_Format(PyExc_ValueError, "advance: %s", what);
    return NULL;
}

/* ------------------------------------------------------------------ the kernel */
static PyObject *advance(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    (void)self;
    if (nargs != N_ARGS) {
        PyErr_Format(PyExc_TypeError, "advance takes %d arguments (%zd given)", N_ARGS,
                     nargs);
        return NULL;
    }
    int floor_on = PyObject_IsTrue(args[FLOOR_ON]);
    if (floor_on < 0)
        return NULL;
    Args a;
    memset(a.held, 0, sizeof a.held);
    PyObject *result = NULL;
    void *scratch = NULL;
    if (acquire(&a, args) < 0)
        goto done;

    const Py_ssize_t n = LEN(IDX);
    const int64_t *idx = P(int64_t, IDX), *pos = P(int64_t, POS);
    const float *dt = P(float, DT);
    const int64_t *level_slots = P(int64_t, LEVEL_SLOTS);
    const float *level = P(float, LEVEL);
    const int8_t *voice = P(int8_t, VOICE);
    const uint8_t *present = a.held[PRESENT] ? P(uint8_t, PRESENT) : NULL;
    if (present == NULL) {
        /* the steady state: every participant has a level, in slot order; else the
         * caller gathers the frames (-1, nothing changed) */
        int same = LEN(LEVEL_SLOTS) == n;
        for (Py_ssize_t i = 0; same && i < n; i++)
            same = level_slots[i] == idx[i];
        if (!same) {
            result = Py_BuildValue("(iiii)", -1, 0, 0, 0);
            goto done;
        }
    }

    const Py_ssize_t n_rooms = LEN(ROOMS);
    const Py_ssize_t n_slots = LEN(NOISE_FLOOR);
    const Py_ssize_t n_all_rooms = LEN(HOLDER);
    const int64_t *rooms = P(int64_t, ROOMS), *t_ms = P(int64_t, T_MS),
                  *duration_ms = P(int64_t, DURATION_MS);
    const double *tun = P(double, TUN), *alpha = P(double, ALPHA),
                 *room_tun = P(double, ROOM_TUN);
    const int64_t *members = P(int64_t, MEMBERS), *member_start = P(int64_t, MEMBER_START);
    float *noise_floor = P(float, NOISE_FLOOR), *speech_level = P(float, SPEECH_LEVEL),
          *level_smooth = P(float, LEVEL_SMOOTH), *activity = P(float, ACTIVITY);
    uint8_t *speaking = P(uint8_t, SPEAKING);
    int64_t *last_active_ms = P(int64_t, LAST_ACTIVE_MS),
            *run_start_ms = P(int64_t, RUN_START_MS), *onset_ms = P(int64_t, ONSET_MS),
            *loud_since_ms = P(int64_t, LOUD_SINCE_MS);
    float *evidence_ms = P(float, EVIDENCE_MS), *voiced_run_ms = P(float, VOICED_RUN_MS),
          *last_level = P(float, LAST_LEVEL), *modulation_db = P(float, MODULATION_DB);
    const uint8_t *muted = P(uint8_t, MUTED);
    uint8_t *silent = P(uint8_t, SILENT);
    int64_t *last_frame_ms = P(int64_t, LAST_FRAME_MS);
    uint8_t *reported_speaking = P(uint8_t, REPORTED_SPEAKING);
    int64_t *reported_ms = P(int64_t, REPORTED_MS);
    const int64_t *joined = P(int64_t, JOINED);
    const int32_t *holder = P(int32_t, HOLDER);
    int64_t *room_t_ms = P(int64_t, ROOM_T_MS), *ranking_t_ms = P(int64_t, RANKING_T_MS);
    const int64_t *ranking_phase_ms = P(int64_t, RANKING_PHASE_MS);
    int64_t *ranked = P(int64_t, RANKED);
    const int32_t *slot_room = P(int32_t, SLOT_ROOM);
    const uint8_t *video = P(uint8_t, VIDEO);
    const int32_t *pinned = P(int32_t, PINNED), *shown = P(int32_t, SHOWN);
    const int64_t *forwarded = P(int64_t, FORWARDED),
                  *forwarded_main = P(int64_t, FORWARDED_MAIN);
    int64_t *t_end_room = P(int64_t, T_END_ROOM);
    uint8_t *live = P(uint8_t, LIVE), *active = P(uint8_t, ACTIVE);
    int64_t *started = P(int64_t, STARTED);
    uint8_t *refresh = P(uint8_t, REFRESH);
    int64_t *reports = P(int64_t, REPORTS), *changes = P(int64_t, CHANGES),
            *due = P(int64_t, DUE);
    const Py_ssize_t width = a.buf[RANKED].shape[1];
    const Py_ssize_t fwidth = a.buf[FORWARDED].shape[1];

    /* shapes and indices, all checked before anything is written */
    {
        static const int per_wave_slot[] = {POS, DT, LEVEL, VOICE, LIVE, ACTIVE, STARTED,
                                            REFRESH, REPORTS};
        for (size_t k = 0; k < sizeof per_wave_slot / sizeof *per_wave_slot; k++)
            if (LEN(per_wave_slot[k]) < n)
                return release(&a), bad(SPECS[per_wave_slot[k]].name);
        if (present && LEN(PRESENT) < n)
            return release(&a), bad("present");
        static const int per_wave_room[] = {T_MS, DURATION_MS, T_END_ROOM, CHANGES, DUE};
        for (size_t k = 0; k < sizeof per_wave_room / sizeof *per_wave_room; k++)
            if (LEN(per_wave_room[k]) < n_rooms)
                return release(&a), bad(SPECS[per_wave_room[k]].name);
        if (a.buf[CHANGES].shape[1] != 2)
            return release(&a), bad("changes");
        if (LEN(TUN) < N_TUN || a.buf[TUN].shape[1] != n || LEN(ALPHA) < N_ALPHA
            || a.buf[ALPHA].shape[1] != n || LEN(ROOM_TUN) < N_ROOM_TUN
            || a.buf[ROOM_TUN].shape[1] != n_rooms)
            return release(&a), bad("tuning table shapes");
        static const int per_slot[] = {SPEECH_LEVEL, LEVEL_SMOOTH, ACTIVITY, SPEAKING,
                                       LAST_ACTIVE_MS, RUN_START_MS, LOUD_SINCE_MS,
                                       ONSET_MS, EVIDENCE_MS,
                                       VOICED_RUN_MS, LAST_LEVEL, MODULATION_DB, MUTED,
                                       SILENT, LAST_FRAME_MS, REPORTED_SPEAKING,
                                       REPORTED_MS, JOINED, SLOT_ROOM, VIDEO};
        for (size_t k = 0; k < sizeof per_slot / sizeof *per_slot; k++)
            if (LEN(per_slot[k]) != n_slots)
                return release(&a), bad(SPECS[per_slot[k]].name);
        static const int per_room[] = {ROOM_T_MS, RANKING_T_MS, RANKING_PHASE_MS, RANKED,
                                       PINNED, SHOWN, FORWARDED, FORWARDED_MAIN};
        for (size_t k = 0; k < sizeof per_room / sizeof *per_room; k++)
            if (LEN(per_room[k]) < n_all_rooms)
                return release(&a), bad(SPECS[per_room[k]].name);
        if (LEN(MEMBERS) != n || LEN(MEMBER_START) != n_rooms + 1 || member_start[0] != 0
            || member_start[n_rooms] != n)
            return release(&a), bad("members");
        for (Py_ssize_t p = 0; p < n_rooms; p++) {
            if (rooms[p] < 0 || rooms[p] >= n_all_rooms)
                return release(&a), bad("rooms");
            if (member_start[p + 1] < member_start[p])
                return release(&a), bad("member_start");
            int32_t h = holder[rooms[p]];
            if (h >= n_slots)
                return release(&a), bad("holder");
            int32_t pin = pinned[rooms[p]], sh = shown[rooms[p]];
            if (pin >= n_slots || sh >= n_slots)
                return release(&a), bad("pinned/shown");
            for (Py_ssize_t j = 0; j < fwidth; j++)
                if (forwarded[rooms[p] * fwidth + j] >= n_slots)
                    return release(&a), bad("forwarded");
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            if (idx[i] < 0 || idx[i] >= n_slots || members[i] < 0 || members[i] >= n_slots)
                return release(&a), bad("idx");
            if (pos[i] < 0 || pos[i] >= n_rooms)
                return release(&a), bad("pos");
        }
    }
#define TUNV(row, i) tun[(row) * n + (i)]
#define ALPHAV(row, i) alpha[(row) * n + (i)]
#define ROOMV(row, p) room_tun[(row) * n_rooms + (p)]

    /* scratch: per room of the wave, and the candidates of one room's ranking */
    size_t rsz = (size_t)(n_rooms > 0 ? n_rooms : 1);
    size_t bytes = rsz * (sizeof(double) + 3 * sizeof(float) + 2 * sizeof(int64_t) + 1)
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
    int64_t *cand = count + rsz;
    int64_t *row = cand + (n > 0 ? n : 1);
    float *best = (float *)(row + (width > 0 ? width : 1));
    float *win_ev = best + rsz;
    float *win_lv = win_ev + rsz;
    uint8_t *outlasted = (uint8_t *)(win_lv + rsz);

    for (Py_ssize_t p = 0; p < n_rooms; p++)
        t_end_room[p] = t_ms[p] + duration_ms[p];

    /* activity (activity.update) */
    Py_ssize_t n_reports = 0, n_started = 0, n_changes = 0, n_due = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        const int64_t s = idx[i];
        const int64_t t_end = t_end_room[pos[i]];
        float lv = level[i];
        int64_t v = voice[i];
        const int here = present == NULL || present[i];
        if (here)
            last_frame_ms[s] = t_end;
        if (muted[s]) {
            lv = SILENCE;
            v = 0;
        }
        if (!here && !((double)(t_end - last_frame_ms[s]) > TUNV(NO_AUDIO_TIMEOUT, i))) {
            live[i] = 0; /* a short gap in its packets: it sits the frame out */
            active[i] = 0;
            continue;
        }
        live[i] = 1;
        const float dt_i = dt[i];
        /* noise floor: a new participant's starts at its first sounding frame */
        float floor_ = noise_floor[s];
        const int sounding = lv > SILENCE;
        if (isnan(floor_) && sounding)
            floor_ = minf_(lv, INITIAL_FLOOR);
        int voiced;
        if (v < 0)
            voiced = (double)(float)(lv - floor_) >= TUNV(ENERGY_SNR, i);
        else
            voiced = v > 0;
        int speech_like = voiced && sounding
                          && (double)(float)(lv - floor_) >= TUNV(MIN_SNR, i)
                          && (double)lv >= TUNV(MIN_LEVEL, i);
        /* the participant's own speech level, and whether this frame reaches near it */
        if (speech_like) {
            float sp = speech_level[s];
            if (isnan(sp))
                sp = minf_(lv, INITIAL_SPEECH_MAX);
            const double al = lv > sp ? ALPHAV(A_SPEECH_RISE, i) : ALPHAV(A_SPEECH_FALL, i);
            const double sp64 = (double)sp + al * (double)(float)(lv - sp);
            speech_level[s] = (float)sp64;
            speech_like = (double)lv >= sp64 - TUNV(SPEECH_MARGIN, i);
        }
        float run = 0.0f;
        if (speech_like) {
            const float run_before = voiced_run_ms[s];
            /* float32 |jump| - mod (numpy: float32 arrays), float64 step (a float64
             * coefficient), rounded to float32 when stored */
            const float mod32 = modulation_db[s];
            double mod = (double)mod32
                + ALPHAV(A_MODULATION, i) * (double)(float)(fabsf(lv - last_level[s]) - mod32);
            if (run_before == 0 && activity[s] < ONSET_RESET)
                mod = (double)ONSET_MOD;
            modulation_db[s] = (float)mod;
            run = (float)(run_before + dt_i);
        }
        voiced_run_ms[s] = run;
        const int is_active = speech_like && (double)run >= TUNV(MIN_RUN, i);
        const int confirming = is_active && (double)(float)(run - dt_i) < TUNV(MIN_RUN, i);
        const float step = confirming ? run : dt_i;
        last_level[s] = lv;
        if (sounding)
            noise_floor[s] = (float)toward(floor_, lv, ALPHAV(A_FLOOR_RISE, i),
                                           ALPHAV(A_FLOOR_FALL, i));
        const float lvs = maxf_(lv, SMOOTH_FLOOR);
        level_smooth[s] = (float)toward(level_smooth[s], lvs, ALPHAV(A_LEVEL_ATTACK, i),
                                        ALPHAV(A_LEVEL_RELEASE, i));
        const float act = activity[s];
        const float target = is_active ? 1.0f : 0.0f;
        double new_act;
        if (confirming) { /* a confirmed run's frames, all at once */
            const double al = -expm1((double)(-step) / maxd_(TUNV(ACT_ATTACK_MS, i), 1e-3));
            new_act = (double)act + al * (double)(float)(target - act);
        } else {
            new_act = toward(act, target, ALPHAV(A_ACT_ATTACK, i), ALPHAV(A_ACT_RELEASE, i));
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
        const int now = sounding && ((was && new_act > TUNV(SPEAKING_OFF, i))
                                     || (!was && new_act >= TUNV(SPEAKING_ON, i)));
        speaking[s] = (uint8_t)now;
        if (now && !was) {
            onset_ms[s] = run_start_ms[s];
            started[n_started++] = i;
        }
    }

    /* SpeakingChanged: at most one per speaking_interval_ms; a stop by silence at once */
    for (Py_ssize_t i = 0; i < n; i++) {
        if (!live[i])
            continue;
        const int64_t s = idx[i];
        const int now = speaking[s] != 0;
        if (now != (reported_speaking[s] != 0)) {
            const int64_t t_end = t_end_room[pos[i]];
            if ((double)(t_end - reported_ms[s]) >= TUNV(SPEAKING_INTERVAL, i)
                || (!now && silent[s])) {
                reported_speaking[s] = (uint8_t)now;
                reported_ms[s] = t_end;
                reports[n_reports++] = i;
            }
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
        /* floor evidence: gathered by a speaking challenger louder than the holder by the
         * margin, on its speech frames; drained otherwise */
        for (Py_ssize_t p = 0; p < n_rooms; p++) {
            const int32_t h = holder[rooms[p]];
            score[p] = (h < 0 || muted[h] || silent[h]) ? -INFINITY : (double)level_smooth[h];
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!live[i])
                continue;
            const int64_t s = idx[i];
            const int64_t p = pos[i];
            const int32_t h = holder[rooms[p]];
            const float e = evidence_ms[s];
            /* talk over the holder counts from the first run within the overlap margin */
            if (!speaking[s])
                loud_since_ms[s] = NOT_LOUD_MS;
            else if (active[i] && loud_since_ms[s] == NOT_LOUD_MS
                     && (double)level_smooth[s] >= score[p] - ROOMV(OVERLAP_MARGIN, p))
                loud_since_ms[s] = t_end_room[p] - (int64_t)voiced_run_ms[s];
            if (speaking[s] && s != h && !muted[s]
                && (double)level_smooth[s] > score[p] + TUNV(SWITCH_MARGIN, i)) {
                if (active[i]) {
                    const float run = voiced_run_ms[s];
                    const float speech_ms =
                        (double)(float)(run - dt[i]) < TUNV(MIN_RUN, i) ? run : dt[i];
                    evidence_ms[s] = (float)(e + speech_ms);
                }
            } else if (e != 0) {
                evidence_ms[s] = s == h ? 0.0f
                    : (float)maxd_((double)e - TUNV(EVIDENCE_DECAY, i) * (double)dt[i], 0.0);
            }
        }

        /* takeovers: the recent, speech-like challenger with most evidence, if enough */
        for (Py_ssize_t p = 0; p < n_rooms; p++) {
            best[p] = 0.0f;
            outlasted[p] = 0;
            win[p] = -1;
            win_ev[p] = 0.0f;
            win_lv[p] = 0.0f;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            if (!live[i])
                continue;
            const int64_t s = idx[i];
            const int64_t p = pos[i];
            const int32_t h = holder[rooms[p]];
            const int64_t t_end = t_end_room[p];
            float e = evidence_ms[s];
            const double min_mod = TUNV(MIN_MODULATION, i);
            if (!(e != 0 && (double)(t_end - last_active_ms[s]) <= TUNV(TAKEOVER_RECENCY, i)
                  && ((double)modulation_db[s] >= min_mod || h < 0
                      || (double)modulation_db[h] < min_mod)))
                e = 0.0f;
            if (e > best[p])
                best[p] = e;
            if (e != 0 && h >= 0 && (double)e >= ROOMV(MIN_SPEECH, p)
                && (double)(t_end - last_active_ms[h]) >= ROOMV(OUTLAST, p)
                && loud_since_ms[s] != NOT_LOUD_MS
                && (double)(t_end - loud_since_ms[s] + (t_end - last_active_ms[h]))
                   >= ROOMV(OUTLAST_TOTAL, p))
                outlasted[p] = 1;
            if (win[p] < 0 || e > win_ev[p] || (e == win_ev[p] && level_smooth[s] > win_lv[p])) {
                win[p] = s;
                win_ev[p] = e;
                win_lv[p] = level_smooth[s];
            }
        }
        for (Py_ssize_t p = 0; p < n_rooms; p++) {
            const int32_t h = holder[rooms[p]];
            const double holder_silent = h < 0 ? 0.0 : (double)(t_end_room[p] - last_active_ms[h]);
            const int quiet = h < 0 || muted[h]
                || (silent[h] && holder_silent >= ROOMV(SILENT_HOLD, p))
                || (holder_silent >= ROOMV(HOLD, p) && voiced_run_ms[h] == 0);
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
    result = Py_BuildValue("(nnnn)", n_reports, n_started, n_changes, n_due);

done:
    PyMem_Free(scratch);
    release(&a);
    return result;
}

static PyMethodDef methods[] = {
    {"advance", (PyCFunction)(void (*)(void))advance, METH_FASTCALL,
     "advance(idx, pos, dt, level_slots, level, voice, present, rooms, t_ms, duration_ms,\n"
     "        floor_on, tun, alpha, room_tun, members, member_start, <engine state>...,\n"
     "        t_end_room, live, active, started, refresh, reports, changes, due)\n"
     "One frame of every participant of a wave (see dsp/engine.py). Returns (number of\n"
     "reports, of starters, of floor changes, of new rankings), or (-1, 0, 0, 0) with\n"
     "nothing changed if level_slots (with present None) are not idx."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "dsp._kernel",
    "The engine's level path for one wave, compiled (see dsp/engine.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__kernel(void)
{
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    /* the constants compiled in, so that a test can hold them to dsp's Python ones */
    PyObject *constants = Py_BuildValue(
        "{s:L,s:L,s:L,s:d,s:d,s:d,s:d,s:d,s:d}", "NEVER_MS", (long long)NEVER_MS,
        "NOT_LOUD_MS", (long long)NOT_LOUD_MS,
        "NOT_RANKED", (long long)NOT_RANKED, "SILENCE_DBOV", (double)SILENCE,
        "SMOOTH_FLOOR_DBOV", (double)SMOOTH_FLOOR, "INITIAL_FLOOR_DBOV", (double)INITIAL_FLOOR,
        "INITIAL_SPEECH_MAX_DBOV", (double)INITIAL_SPEECH_MAX,
        "ONSET_RESET_ACTIVITY", (double)ONSET_RESET, "ONSET_MODULATION_DB", (double)ONSET_MOD);
    if (PyModule_AddIntConstant(m, "ABI", ABI_VERSION) < 0 || constants == NULL
        || PyModule_AddObject(m, "CONSTANTS", constants) < 0) {
        Py_XDECREF(constants);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
