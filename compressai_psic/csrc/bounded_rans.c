/*
 * A rANS decoder for CompressAI's bitstreams that never reads past its input.
 *
 * CompressAI's RansDecoder (cpp_exts/rans, after F. Giesen's rans64) reads the
 * string as 32-bit words with no end-of-buffer check, so this package used to
 * append a worst-case run of zeros (76 bytes per symbol) before every decode.
 * This decoder decodes the same format symbol for symbol, but a read past the
 * end of the string returns a zero word without touching memory and is counted:
 * the result is exactly what CompressAI's decoder gives on the zero-padded
 * string, with no padding and no allocation beyond the output.
 *
 * It also reports whether the stream was consistent: a valid string is read to
 * its last word, never past it, and leaves the state the encoder started from
 * (2**31). Anything else is a corrupted string or one decoded with other tables
 * than the encoder's.
 *
 * Format (16-bit precision, 4-bit bypass words; all integers native-endian):
 *
 *     words:  [state lo][state hi][renormalisation words ...]
 *     symbol: s = first j with cdf[j] > (x mod 2**16), minus 1
 *             x = freq * (x >> 16) + (x mod 2**16) - cdf[s];  refill below 2**31
 *     s == length - 2 (the table's last symbol) escapes to bypass mode: 4-bit
 *     counts while they are 15, then that many 4-bit digits of the raw value.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#define PRECISION 16
#define BYPASS_BITS 4
#define BYPASS_MAX ((1u << BYPASS_BITS) - 1u)
#define STATE_LOW (1ull << 31)

typedef struct {
    const unsigned char *next;
    const unsigned char *end;
    uint64_t past_end; /* words asked for after the string ran out */
} WordReader;

static inline uint32_t read_word(WordReader *reader) {
    uint32_t word = 0;
    if (reader->end - reader->next >= 4) {
        memcpy(&word, reader->next, 4);
        reader->next += 4;
    } else {
        /* A partial last word is refused by the caller: only whole words here. */
        reader->past_end += 1;
    }
    return word;
}

static inline uint64_t refill(uint64_t x, WordReader *reader) {
    if (x < STATE_LOW) {
        x = (x << 32) | read_word(reader);
    }
    return x;
}

static inline uint32_t get_bits(uint64_t *x, WordReader *reader) {
    uint32_t value = (uint32_t)(*x & BYPASS_MAX);
    *x = refill(*x >> BYPASS_BITS, reader);
    return value;
}

/* Decodes `count` symbols; returns 0, or -1 with `*bad` set to the index of a
 * table that is not a CDF (values outside [0, 2**16] or a first value above a
 * state's low bits), which only a tampered model can hold. */
static int decode_symbols(
    WordReader *reader, uint64_t *state, Py_ssize_t count, const int32_t *indexes,
    const int32_t *cdfs, Py_ssize_t stride, const int32_t *lengths,
    const int32_t *offsets, int32_t *out, Py_ssize_t *bad) {
    uint64_t x = *state;
    const uint64_t mask = (1ull << PRECISION) - 1u;
    for (Py_ssize_t i = 0; i < count; ++i) {
        const int32_t table = indexes[i];
        const int32_t *cdf = cdfs + (Py_ssize_t)table * stride;
        const int32_t length = lengths[table];
        const int32_t max_value = length - 2;
        const int32_t low = (int32_t)(x & mask);
        int32_t j = 0;
        while (j < length && cdf[j] <= low) {
            ++j;
        }
        if (j == 0 || j == length) {
            *bad = table;
            return -1;
        }
        const int32_t s = j - 1;
        const uint64_t start = (uint64_t)cdf[s];
        const uint64_t freq = (uint64_t)(cdf[s + 1] - cdf[s]);
        x = refill(freq * (x >> PRECISION) + (x & mask) - start, reader);
        uint32_t value = (uint32_t)s;
        if (s == max_value) {
            /* Bypass mode. Unsigned arithmetic: on garbage the sums and shifts
             * wrap as the native decoder's do on x86, never undefined. */
            uint32_t digit = get_bits(&x, reader);
            uint32_t digits = digit;
            while (digit == BYPASS_MAX) {
                digit = get_bits(&x, reader);
                digits += digit;
            }
            uint32_t raw = 0;
            for (uint32_t k = 0; k < digits; ++k) {
                digit = get_bits(&x, reader);
                raw |= digit << ((k * BYPASS_BITS) & 31u);
            }
            value = (uint32_t)((int32_t)raw >> 1);
            if (raw & 1u) {
                value = (uint32_t)0 - value - 1u;
            } else {
                value += (uint32_t)max_value;
            }
        }
        out[i] = (int32_t)(value + (uint32_t)offsets[table]);
    }
    *state = x;
    return 0;
}

static int check_buffer(Py_buffer *view, Py_ssize_t items, const char *name) {
    if (view->len != items * 4) {
        PyErr_Format(PyExc_ValueError, "%s holds %zd bytes, expected %zd int32",
                     name, view->len, items);
        return -1;
    }
    return 0;
}

PyDoc_STRVAR(decode_doc,
"decode(string, indexes, cdfs, stride, lengths, offsets, out, position, state)\n"
"--\n\n"
"Decodes len(indexes) symbols of CompressAI's rANS format into ``out``.\n\n"
"``indexes``: int32 table index per symbol; ``cdfs``: int32 tables, ``stride``\n"
"values per row; ``lengths`` and ``offsets``: int32 per table; ``out``: a\n"
"writable int32 buffer of len(indexes). ``position`` < 0 starts a string (its\n"
"first two words are the state); else decoding goes on from byte ``position``\n"
"with ``state`` (what an earlier call returned). Reads never leave ``string``:\n"
"a read past its end gives a zero word. Returns (position, words_read_past_end,\n"
"state).");

static PyObject *decode(PyObject *self, PyObject *args) {
    Py_buffer string, indexes, cdfs, lengths, offsets, out;
    Py_ssize_t stride, position;
    unsigned long long start_state;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*y*ny*y*w*nK", &string, &indexes, &cdfs, &stride,
                          &lengths, &offsets, &out, &position, &start_state)) {
        return NULL;
    }
    const Py_ssize_t count = indexes.len / 4;
    const Py_ssize_t tables = lengths.len / 4;
    if (string.len % 4) {
        PyErr_SetString(PyExc_ValueError, "the string is not whole 32-bit words");
        goto done;
    }
    if (position > string.len || (position >= 0 && position % 4)) {
        PyErr_Format(PyExc_ValueError, "position %zd is not a word of the string",
                     position);
        goto done;
    }
    if (stride < 2 || tables < 1 || check_buffer(&indexes, count, "indexes") ||
        check_buffer(&lengths, tables, "lengths") ||
        check_buffer(&offsets, tables, "offsets") ||
        check_buffer(&cdfs, tables * stride, "cdfs") ||
        check_buffer(&out, count, "out")) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "need a table of at least 2 values");
        }
        goto done;
    }
    {
        const int32_t *index = (const int32_t *)indexes.buf;
        const int32_t *length = (const int32_t *)lengths.buf;
        const int32_t *cdf = (const int32_t *)cdfs.buf;
        for (Py_ssize_t t = 0; t < tables; ++t) {
            if (length[t] < 2 || length[t] > stride) {
                PyErr_Format(PyExc_ValueError,
                             "table %zd has length %d, not in [2, %zd]", t,
                             (int)length[t], stride);
                goto done;
            }
        }
        for (Py_ssize_t k = 0; k < tables * stride; ++k) {
            if (cdf[k] < 0 || cdf[k] > (1 << PRECISION)) {
                PyErr_Format(PyExc_ValueError, "table %zd holds %d, not in [0, %d]",
                             k / stride, (int)cdf[k], 1 << PRECISION);
                goto done;
            }
        }
        for (Py_ssize_t i = 0; i < count; ++i) {
            if (index[i] < 0 || index[i] >= tables) {
                PyErr_Format(PyExc_ValueError,
                             "symbol %zd has table index %d, not in [0, %zd)", i,
                             (int)index[i], tables);
                goto done;
            }
        }
    }
    {
        const unsigned char *begin = (const unsigned char *)string.buf;
        WordReader reader = {begin, begin + string.len, 0};
        uint64_t state = start_state;
        if (position < 0) {
            state = read_word(&reader);
            state |= (uint64_t)read_word(&reader) << 32;
        } else {
            reader.next = begin + position;
        }
        Py_ssize_t bad = -1;
        int status;
        Py_BEGIN_ALLOW_THREADS
        status = decode_symbols(&reader, &state, count, (const int32_t *)indexes.buf,
                                (const int32_t *)cdfs.buf, stride,
                                (const int32_t *)lengths.buf,
                                (const int32_t *)offsets.buf, (int32_t *)out.buf, &bad);
        Py_END_ALLOW_THREADS
        if (status) {
            PyErr_Format(PyExc_ValueError, "table %zd is not a cumulative frequency "
                         "table of %d-bit precision", bad, PRECISION);
            goto done;
        }
        result = Py_BuildValue("(nKK)", (Py_ssize_t)(reader.next - begin),
                               (unsigned long long)reader.past_end,
                               (unsigned long long)state);
    }
done:
    PyBuffer_Release(&string);
    PyBuffer_Release(&indexes);
    PyBuffer_Release(&cdfs);
    PyBuffer_Release(&lengths);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS, decode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_bounded_rans",
    "A rANS decoder for CompressAI's bitstreams that checks the end of its input "
    "(see compressai_psic.models.rans).",
    -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__bounded_rans(void) { return PyModule_Create(&module); }
