/* fastejson: a change event's BSON straight to MongoDB Relaxed Extended JSON v2, in C.
 *
 * The relay's per-change cost is mostly rendering: pymongo decodes each change into Python
 * objects, and orjson writes them out again, calling back into Python for every ObjectId, date
 * and decimal. This module reads the BSON bytes once and writes the JSON text directly.
 *
 * It must never disagree with the contract's general path (pymongo's decoder, orjson and
 * bson.json_util with the contract's options). So it renders only what it renders exactly as
 * that path does, and raises FallBackError for anything else: malformed BSON, invalid UTF-8, the
 * rarer BSON types (regex, code, DBPointer, MinKey, MaxKey, old binary), DBRefs, decimals that
 * are not finite. The caller then takes the general path, which renders the value or names the
 * problem. Being stricter than pymongo is safe; being laxer never is.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <datetime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "fastejson reads BSON's little-endian integers in place: build it for a little-endian CPU"
#endif

/* Deeper than any document mongod stores (100 levels, plus the change event's own). */
#define MAX_DEPTH 200
/* 9999-12-31T23:59:59.999Z: the last date json_util writes as ISO 8601 text. */
#define MAX_ISO_MS INT64_C(253402300799999)
/* 0001-01-01T00:00:00Z: the first date Python's datetime holds. */
#define MIN_DATETIME_MS INT64_C(-62135596800000)

static PyObject *FallBackError;

static const char HEX[] = "0123456789abcdef";

/* An output buffer that grows by doubling. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
} out_t;

static int out_reserve(out_t *out, size_t extra) {
    if (out->cap - out->len >= extra) {
        return 0;
    }
    size_t need = out->len + extra;
    size_t cap = out->cap ? out->cap : 1024;
    while (cap < need) {
        cap *= 2;
    }
    char *grown = PyMem_Realloc(out->data, cap);
    if (grown == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    out->data = grown;
    out->cap = cap;
    return 0;
}

static int out_write(out_t *out, const char *text, size_t len) {
    if (out_reserve(out, len) < 0) {
        return -1;
    }
    memcpy(out->data + out->len, text, len);
    out->len += len;
    return 0;
}

#define OUT_LITERAL(out, text) out_write((out), (text), sizeof(text) - 1)

static int fall_back(const char *reason) {
    PyErr_SetString(FallBackError, reason);
    return -1;
}

static int32_t read_int32(const uint8_t *at) {
    int32_t value;
    memcpy(&value, at, 4);
    return value;
}

static int64_t read_int64(const uint8_t *at) {
    int64_t value;
    memcpy(&value, at, 8);
    return value;
}

static uint64_t read_uint64(const uint8_t *at) {
    uint64_t value;
    memcpy(&value, at, 8);
    return value;
}

/* The digits of `value`, written backwards to end just before `end`; returns the first one. */
static char *format_uint64(uint64_t value, char *end) {
    char *digit = end;
    do {
        *--digit = (char)('0' + value % 10);
        value /= 10;
    } while (value);
    return digit;
}

static int write_int64(out_t *out, int64_t value) {
    char buf[24];
    char *end = buf + sizeof(buf);
    uint64_t magnitude = value < 0 ? (uint64_t)0 - (uint64_t)value : (uint64_t)value;
    char *start = format_uint64(magnitude, end);
    if (value < 0) {
        *--start = '-';
    }
    return out_write(out, start, (size_t)(end - start));
}

/* The length of the well-formed UTF-8 sequence at `at` (Unicode's table 3-7, as Python's strict
 * decoder reads it), or 0 if there is none. */
static size_t utf8_sequence(const uint8_t *at, size_t avail) {
    uint8_t lead = at[0];
    if (lead >= 0xC2 && lead <= 0xDF) {
        return (avail >= 2 && (at[1] & 0xC0) == 0x80) ? 2 : 0;
    }
    if (lead >= 0xE0 && lead <= 0xEF) {
        if (avail < 3 || (at[2] & 0xC0) != 0x80) {
            return 0;
        }
        uint8_t low = lead == 0xE0 ? 0xA0 : 0x80;
        uint8_t high = lead == 0xED ? 0x9F : 0xBF;
        return (at[1] >= low && at[1] <= high) ? 3 : 0;
    }
    if (lead >= 0xF0 && lead <= 0xF4) {
        if (avail < 4 || (at[2] & 0xC0) != 0x80 || (at[3] & 0xC0) != 0x80) {
            return 0;
        }
        uint8_t low = lead == 0xF0 ? 0x90 : 0x80;
        uint8_t high = lead == 0xF4 ? 0x8F : 0xBF;
        return (at[1] >= low && at[1] <= high) ? 4 : 0;
    }
    return 0;
}

/* A JSON string, escaped as orjson escapes it: `"`, `\` and control characters only. Room is
 * made for the text as it is plus its quotes; each escape (up to 6 bytes for 1) makes more. */
static int write_string(out_t *out, const uint8_t *text, size_t len) {
    if (out_reserve(out, len + 2) < 0) {
        return -1;
    }
    char *write = out->data + out->len;
    *write++ = '"';
    size_t i = 0;
    while (i < len) {
        uint8_t c = text[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            *write++ = (char)c;
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t seq = utf8_sequence(text + i, len - i);
            if (seq == 0) {
                return fall_back("invalid UTF-8");
            }
            memcpy(write, text + i, seq);
            write += seq;
            i += seq;
            continue;
        }
        /* An escape: room for it, the rest of the text and the closing quote. */
        out->len = (size_t)(write - out->data);
        if (out_reserve(out, 6 + (len - i - 1) + 1) < 0) {
            return -1;
        }
        write = out->data + out->len;
        *write++ = '\\';
        switch (c) {
        case '"': *write++ = '"'; break;
        case '\\': *write++ = '\\'; break;
        case '\b': *write++ = 'b'; break;
        case '\f': *write++ = 'f'; break;
        case '\n': *write++ = 'n'; break;
        case '\r': *write++ = 'r'; break;
        case '\t': *write++ = 't'; break;
        default:
            *write++ = 'u';
            *write++ = '0';
            *write++ = '0';
            *write++ = HEX[c >> 4];
            *write++ = HEX[c & 0xF];
        }
        i++;
    }
    *write++ = '"';
    out->len = (size_t)(write - out->data);
    return 0;
}

/* Python's repr of a finite double (what json_util writes); NaN and infinities as json_util
 * writes them in relaxed mode. */
static int write_double(out_t *out, double value) {
    if (isnan(value)) {
        return OUT_LITERAL(out, "{\"$numberDouble\":\"NaN\"}");
    }
    if (isinf(value)) {
        return value > 0 ? OUT_LITERAL(out, "{\"$numberDouble\":\"Infinity\"}")
                         : OUT_LITERAL(out, "{\"$numberDouble\":\"-Infinity\"}");
    }
    char *text = PyOS_double_to_string(value, 'r', 0, Py_DTSF_ADD_DOT_0, NULL);
    if (text == NULL) {
        return -1;
    }
    int result = out_write(out, text, strlen(text));
    PyMem_Free(text);
    return result;
}

/* Days since 1970-01-01 to a civil date (proleptic Gregorian). */
static void civil_from_days(int64_t days, int64_t *year, int *month, int *day) {
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = yoe + era * 400 + (*month <= 2);
}

typedef struct {
    int64_t year;
    int month, day, hour, minute, second, millisecond;
} civil_t;

static civil_t civil_from_ms(int64_t ms) {
    civil_t when;
    int64_t days = ms / 86400000;
    int64_t rest = ms % 86400000;
    if (rest < 0) {
        rest += 86400000;
        days -= 1;
    }
    civil_from_days(days, &when.year, &when.month, &when.day);
    when.hour = (int)(rest / 3600000);
    when.minute = (int)(rest / 60000 % 60);
    when.second = (int)(rest / 1000 % 60);
    when.millisecond = (int)(rest % 1000);
    return when;
}

static void put_digits(char *at, int value, int width) {
    for (int i = width - 1; i >= 0; i--) {
        at[i] = (char)('0' + value % 10);
        value /= 10;
    }
}

/* {"$date": "2026-12-04T10:00:00.123Z"} from 1970 to 9999 (milliseconds only when not zero), as
 * json_util writes it; {"$date": {"$numberLong": "..."}} outside that range. */
static int write_datetime(out_t *out, int64_t ms) {
    if (ms < 0 || ms > MAX_ISO_MS) {
        if (OUT_LITERAL(out, "{\"$date\":{\"$numberLong\":\"") < 0 || write_int64(out, ms) < 0) {
            return -1;
        }
        return OUT_LITERAL(out, "\"}}");
    }
    civil_t when = civil_from_ms(ms);
    char text[] = "{\"$date\":\"YYYY-MM-DDTHH:MM:SS.mmmZ\"}";
    char *at = text + 10;
    put_digits(at, (int)when.year, 4);
    put_digits(at + 5, when.month, 2);
    put_digits(at + 8, when.day, 2);
    put_digits(at + 11, when.hour, 2);
    put_digits(at + 14, when.minute, 2);
    put_digits(at + 17, when.second, 2);
    if (when.millisecond) {
        put_digits(at + 20, when.millisecond, 3);
        return out_write(out, text, sizeof(text) - 1);
    }
    memcpy(at + 19, "Z\"}", 3);
    return out_write(out, text, sizeof(text) - 1 - 4);
}

static int write_object_id(out_t *out, const uint8_t *oid) {
    char text[] = "{\"$oid\":\"000000000000000000000000\"}";
    for (int i = 0; i < 12; i++) {
        text[9 + 2 * i] = HEX[oid[i] >> 4];
        text[10 + 2 * i] = HEX[oid[i] & 0xF];
    }
    return out_write(out, text, sizeof(text) - 1);
}

static int write_binary(out_t *out, const uint8_t *data, size_t len, uint8_t subtype) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (OUT_LITERAL(out, "{\"$binary\":{\"base64\":\"") < 0 ||
        out_reserve(out, (len + 2) / 3 * 4) < 0) {
        return -1;
    }
    char *write = out->data + out->len;
    size_t i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t group = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8 | data[i + 2];
        *write++ = alphabet[group >> 18];
        *write++ = alphabet[(group >> 12) & 0x3F];
        *write++ = alphabet[(group >> 6) & 0x3F];
        *write++ = alphabet[group & 0x3F];
    }
    if (len - i == 1) {
        uint32_t group = (uint32_t)data[i] << 16;
        *write++ = alphabet[group >> 18];
        *write++ = alphabet[(group >> 12) & 0x3F];
        *write++ = '=';
        *write++ = '=';
    } else if (len - i == 2) {
        uint32_t group = (uint32_t)data[i] << 16 | (uint32_t)data[i + 1] << 8;
        *write++ = alphabet[group >> 18];
        *write++ = alphabet[(group >> 12) & 0x3F];
        *write++ = alphabet[(group >> 6) & 0x3F];
        *write++ = '=';
    }
    out->len = (size_t)(write - out->data);
    char tail[] = "\",\"subType\":\"00\"}}";
    tail[13] = HEX[subtype >> 4];
    tail[14] = HEX[subtype & 0xF];
    return out_write(out, tail, sizeof(tail) - 1);
}

/* A finite decimal128 as Python's `str(Decimal)` spells it (the General Decimal Arithmetic
 * to-scientific-string), which is what pymongo writes. NaN, infinities and non-canonical
 * coefficients are left to pymongo. */
static int write_decimal128(out_t *out, const uint8_t *bid) {
    uint64_t low = read_uint64(bid);
    uint64_t high = read_uint64(bid + 8);
    if ((high & UINT64_C(0x6000000000000000)) == UINT64_C(0x6000000000000000)) {
        return fall_back("decimal128 NaN, infinity or large form");
    }
    int exponent = (int)((high >> 49) & 0x3FFF) - 6176;
    int negative = (int)(high >> 63);

    /* The 113-bit coefficient in 32-bit limbs, most significant first, turned into decimal
     * digits nine at a time by long division (portable C: no 128-bit integers). */
    uint64_t top = high & UINT64_C(0x1FFFFFFFFFFFF);
    uint32_t limbs[4] = {(uint32_t)(top >> 32), (uint32_t)top, (uint32_t)(low >> 32),
                         (uint32_t)low};
    char digits[48];
    char *end = digits + sizeof(digits);
    char *first = end;
    int nonzero = (limbs[0] | limbs[1] | limbs[2] | limbs[3]) != 0;
    if (!nonzero) {
        *--first = '0';
    }
    while (nonzero) {
        uint64_t rest = 0;
        for (int i = 0; i < 4; i++) {
            uint64_t current = rest << 32 | limbs[i];
            limbs[i] = (uint32_t)(current / 1000000000u);
            rest = current % 1000000000u;
        }
        nonzero = (limbs[0] | limbs[1] | limbs[2] | limbs[3]) != 0;
        for (int i = 0; i < 9 && (nonzero || rest); i++) {
            *--first = (char)('0' + rest % 10);
            rest /= 10;
        }
    }
    int count = (int)(end - first);
    if (count > 34) { /* over 10^34 - 1: non-canonical, which means 0 */
        return fall_back("decimal128 coefficient over 34 digits");
    }
    int adjusted = exponent + count - 1;

    char text[80];
    char *write = text;
    memcpy(write, "{\"$numberDecimal\":\"", 19);
    write += 19;
    if (negative) {
        *write++ = '-';
    }
    if (exponent <= 0 && adjusted >= -6) {
        int dot = count + exponent; /* digits before the point */
        if (exponent == 0) {
            memcpy(write, first, (size_t)count);
            write += count;
        } else if (dot > 0) {
            memcpy(write, first, (size_t)dot);
            write += dot;
            *write++ = '.';
            memcpy(write, first + dot, (size_t)(count - dot));
            write += count - dot;
        } else {
            *write++ = '0';
            *write++ = '.';
            memset(write, '0', (size_t)-dot);
            write += -dot;
            memcpy(write, first, (size_t)count);
            write += count;
        }
    } else {
        *write++ = first[0];
        if (count > 1) {
            *write++ = '.';
            memcpy(write, first + 1, (size_t)(count - 1));
            write += count - 1;
        }
        *write++ = 'E';
        *write++ = adjusted < 0 ? '-' : '+';
        char exp_buf[8];
        char *exp_end = exp_buf + sizeof(exp_buf);
        char *exp_first = format_uint64((uint64_t)(adjusted < 0 ? -adjusted : adjusted), exp_end);
        memcpy(write, exp_first, (size_t)(exp_end - exp_first));
        write += exp_end - exp_first;
    }
    *write++ = '"';
    *write++ = '}';
    return out_write(out, text, (size_t)(write - text));
}

static int write_timestamp(out_t *out, const uint8_t *at) {
    uint32_t increment, seconds;
    memcpy(&increment, at, 4);
    memcpy(&seconds, at + 4, 4);
    if (OUT_LITERAL(out, "{\"$timestamp\":{\"t\":") < 0 || write_int64(out, seconds) < 0 ||
        OUT_LITERAL(out, ",\"i\":") < 0 || write_int64(out, increment) < 0) {
        return -1;
    }
    return OUT_LITERAL(out, "}}");
}

/* Where one element's value ends, its bounds checked against `limit` (the byte after the last one
 * it may use); 0 if it does not fit or its type is one this module leaves to pymongo. */
static size_t value_end(uint8_t type, const uint8_t *buf, size_t at, size_t limit) {
    size_t avail = limit - at;
    switch (type) {
    case 0x01: /* double */
    case 0x09: /* datetime */
    case 0x11: /* timestamp */
    case 0x12: /* int64 */
        return avail >= 8 ? at + 8 : 0;
    case 0x02: /* string */
    case 0x0E: /* symbol: pymongo decodes it as a string */
    {
        if (avail < 5) {
            return 0;
        }
        int32_t size = read_int32(buf + at);
        if (size < 1 || (size_t)size > avail - 4 || buf[at + 4 + (size_t)size - 1] != 0) {
            return 0;
        }
        return at + 4 + (size_t)size;
    }
    case 0x03: /* document */
    case 0x04: /* array */
    {
        if (avail < 5) {
            return 0;
        }
        int32_t size = read_int32(buf + at);
        if (size < 5 || (size_t)size > avail || buf[at + (size_t)size - 1] != 0) {
            return 0;
        }
        return at + (size_t)size;
    }
    case 0x05: /* binary */
    {
        if (avail < 5) {
            return 0;
        }
        int32_t size = read_int32(buf + at);
        if (size < 0 || (size_t)size > avail - 5 || buf[at + 4] == 2) { /* 2: old binary */
            return 0;
        }
        return at + 5 + (size_t)size;
    }
    case 0x06: /* undefined: pymongo decodes it as None */
    case 0x0A: /* null */
        return at;
    case 0x07: /* ObjectId */
        return avail >= 12 ? at + 12 : 0;
    case 0x08: /* boolean: 0 or 1, as pymongo insists */
        return (avail >= 1 && buf[at] <= 1) ? at + 1 : 0;
    case 0x10: /* int32 */
        return avail >= 4 ? at + 4 : 0;
    case 0x13: /* decimal128 */
        return avail >= 16 ? at + 16 : 0;
    default: /* regex, DBPointer, code, code with scope, MinKey, MaxKey, unknown */
        return 0;
    }
}

/* One element's header: its type, its key, where its value starts and ends. */
typedef struct {
    uint8_t type;
    const uint8_t *key;
    size_t key_len;
    size_t value;
    size_t end;
} element_t;

/* Reads the element at `at` of the document whose terminating NUL is at `last`. */
static int next_element(const uint8_t *buf, size_t at, size_t last, element_t *element) {
    element->type = buf[at];
    const uint8_t *key = buf + at + 1;
    const uint8_t *nul = memchr(key, 0, last - at - 1);
    if (nul == NULL) {
        return fall_back("field name runs past its document");
    }
    element->key = key;
    element->key_len = (size_t)(nul - key);
    element->value = (size_t)(nul - buf) + 1;
    element->end = value_end(element->type, buf, element->value, last);
    if (element->end == 0) {
        return fall_back("value left to the general path");
    }
    return 0;
}

static int is_dbref_key(const element_t *element) {
    return element->key_len == 4 && memcmp(element->key, "$ref", 4) == 0;
}

/* The end of a document's elements must be its terminating NUL. */
static int check_end(size_t at, size_t last) {
    return at == last ? 0 : fall_back("document size does not match its elements");
}

static int render_value(out_t *out, const uint8_t *buf, const element_t *element, int depth);

/* The document (or array) whose bytes are buf[start:end]. */
static int render_document(out_t *out, const uint8_t *buf, size_t start, size_t end, int array,
                           int depth) {
    if (depth > MAX_DEPTH) {
        return fall_back("nested too deep");
    }
    size_t last = end - 1;
    if (out_write(out, array ? "[" : "{", 1) < 0) {
        return -1;
    }
    size_t at = start + 4;
    int first = 1;
    while (at < last) {
        element_t element;
        if (next_element(buf, at, last, &element) < 0) {
            return -1;
        }
        if (!first && out_write(out, ",", 1) < 0) {
            return -1;
        }
        first = 0;
        if (!array) {
            if (is_dbref_key(&element)) {
                return fall_back("DBRef");
            }
            if (write_string(out, element.key, element.key_len) < 0 ||
                out_write(out, ":", 1) < 0) {
                return -1;
            }
        }
        if (render_value(out, buf, &element, depth) < 0) {
            return -1;
        }
        at = element.end;
    }
    if (check_end(at, last) < 0) {
        return -1;
    }
    return out_write(out, array ? "]" : "}", 1);
}

static int render_value(out_t *out, const uint8_t *buf, const element_t *element, int depth) {
    const uint8_t *value = buf + element->value;
    switch (element->type) {
    case 0x01: {
        double number;
        memcpy(&number, value, 8);
        return write_double(out, number);
    }
    case 0x02:
    case 0x0E:
        return write_string(out, value + 4, (size_t)read_int32(value) - 1);
    case 0x03:
    case 0x04:
        return render_document(out, buf, element->value, element->end, element->type == 0x04,
                               depth + 1);
    case 0x05:
        return write_binary(out, value + 5, (size_t)read_int32(value), value[4]);
    case 0x06:
    case 0x0A:
        return OUT_LITERAL(out, "null");
    case 0x07:
        return write_object_id(out, value);
    case 0x08:
        return value[0] ? OUT_LITERAL(out, "true") : OUT_LITERAL(out, "false");
    case 0x09:
        return write_datetime(out, read_int64(value));
    case 0x10:
        return write_int64(out, read_int32(value));
    case 0x11:
        return write_timestamp(out, value);
    case 0x12:
        return write_int64(out, read_int64(value));
    case 0x13:
        return write_decimal128(out, value);
    default:
        return fall_back("value left to the general path");
    }
}

/* Decoding, for the fields the caller reads rather than renders. */

/* UTF-8 text as a str; invalid UTF-8 is left to the general path, which names it. */
static PyObject *decode_text(const uint8_t *text, size_t len) {
    PyObject *result = PyUnicode_DecodeUTF8((const char *)text, (Py_ssize_t)len, "strict");
    if (result == NULL && PyErr_ExceptionMatches(PyExc_UnicodeDecodeError)) {
        PyErr_Clear();
        fall_back("invalid UTF-8");
    }
    return result;
}

/* dict[key] = value, both references given up; -1 on failure. */
static int set_owned(PyObject *dict, PyObject *key, PyObject *value) {
    int failed = PyDict_SetItem(dict, key, value);
    Py_DECREF(key);
    Py_DECREF(value);
    return failed;
}

typedef struct {
    PyObject *timestamp; /* bson.Timestamp */
} types_t;

static PyObject *decode_document(const uint8_t *buf, size_t start, size_t end, int array,
                                 int depth, const types_t *types);

static PyObject *decode_value(const uint8_t *buf, const element_t *element, int depth,
                              const types_t *types) {
    const uint8_t *value = buf + element->value;
    switch (element->type) {
    case 0x01: {
        double number;
        memcpy(&number, value, 8);
        if (!isfinite(number)) {
            fall_back("non-finite double");
            return NULL;
        }
        return PyFloat_FromDouble(number);
    }
    case 0x02:
    case 0x0E:
        return decode_text(value + 4, (size_t)read_int32(value) - 1);
    case 0x03:
    case 0x04:
        return decode_document(buf, element->value, element->end, element->type == 0x04,
                               depth + 1, types);
    case 0x06:
    case 0x0A:
        Py_RETURN_NONE;
    case 0x08:
        return PyBool_FromLong(value[0]);
    case 0x09: {
        int64_t ms = read_int64(value);
        if (ms < MIN_DATETIME_MS || ms > MAX_ISO_MS) {
            fall_back("date outside Python's range");
            return NULL;
        }
        civil_t when = civil_from_ms(ms);
        return PyDateTime_FromDateAndTime((int)when.year, when.month, when.day, when.hour,
                                          when.minute, when.second, when.millisecond * 1000);
    }
    case 0x10:
        return PyLong_FromLong(read_int32(value));
    case 0x11: {
        uint32_t increment, seconds;
        memcpy(&increment, value, 4);
        memcpy(&seconds, value + 4, 4);
        return PyObject_CallFunction(types->timestamp, "kk", (unsigned long)seconds,
                                     (unsigned long)increment);
    }
    case 0x12:
        return PyLong_FromLongLong(read_int64(value));
    default:
        fall_back("value left to the general path");
        return NULL;
    }
}

static PyObject *decode_document(const uint8_t *buf, size_t start, size_t end, int array,
                                 int depth, const types_t *types) {
    if (depth > MAX_DEPTH) {
        fall_back("nested too deep");
        return NULL;
    }
    PyObject *result = array ? PyList_New(0) : PyDict_New();
    if (result == NULL) {
        return NULL;
    }
    size_t last = end - 1;
    size_t at = start + 4;
    while (at < last) {
        element_t element;
        if (next_element(buf, at, last, &element) < 0) {
            goto error;
        }
        if (!array && is_dbref_key(&element)) {
            fall_back("DBRef");
            goto error;
        }
        PyObject *item = decode_value(buf, &element, depth, types);
        if (item == NULL) {
            goto error;
        }
        if (array) {
            int failed = PyList_Append(result, item);
            Py_DECREF(item);
            if (failed < 0) {
                goto error;
            }
        } else {
            PyObject *key = decode_text(element.key, element.key_len);
            if (key == NULL) {
                Py_DECREF(item);
                goto error;
            }
            if (set_owned(result, key, item) < 0) {
                goto error;
            }
        }
        at = element.end;
    }
    if (check_end(at, last) < 0) {
        goto error;
    }
    return result;
error:
    Py_DECREF(result);
    return NULL;
}

/* The whole top level of a change. */

static int check_document(const uint8_t *buf, Py_ssize_t len) {
    if (len < 5 || len > INT32_MAX || read_int32(buf) != len || buf[len - 1] != 0) {
        return fall_back("not one whole BSON document");
    }
    return 0;
}

static PyObject *scan_buffer(const uint8_t *buf, Py_ssize_t len, PyObject *rendered,
                             PyObject *fragment, const types_t *types) {
    if (check_document(buf, len) < 0) {
        return NULL;
    }

    PyObject *result = PyDict_New();
    if (result == NULL) {
        return NULL;
    }
    out_t out = {NULL, 0, 0};
    size_t last = (size_t)len - 1;
    size_t at = 4;
    while (at < last) {
        element_t element;
        if (next_element(buf, at, last, &element) < 0) {
            goto error;
        }
        PyObject *key = decode_text(element.key, element.key_len);
        if (key == NULL) {
            goto error;
        }
        int render = PySet_Contains(rendered, key);
        PyObject *value = NULL;
        if (render == 1) {
            out.len = 0;
            if (render_value(&out, buf, &element, 0) == 0) {
                PyObject *json = PyBytes_FromStringAndSize(out.data, (Py_ssize_t)out.len);
                if (json != NULL) {
                    value = PyObject_CallOneArg(fragment, json);
                    Py_DECREF(json);
                }
            }
        } else if (render == 0) {
            value = decode_value(buf, &element, 0, types);
        }
        if (value == NULL) {
            Py_DECREF(key);
            goto error;
        }
        if (set_owned(result, key, value) < 0) {
            goto error;
        }
        at = element.end;
    }
    if (check_end(at, last) < 0) {
        goto error;
    }
    PyMem_Free(out.data);
    return result;
error:
    PyMem_Free(out.data);
    Py_DECREF(result);
    return NULL;
}

PyDoc_STRVAR(scan_doc,
"scan(raw, rendered, fragment, timestamp, /)\n"
"--\n\n"
"The top level of the BSON document `raw` (bytes or any buffer) as a dict. Fields named in\n"
"the set `rendered` hold `fragment(json)`, their value as Relaxed Extended JSON (UTF-8 bytes);\n"
"the others are decoded: str, int, float, bool, None, naive UTC datetime, `timestamp(t, i)`,\n"
"dict and list. Raises FallBackError for anything it does not handle exactly as the general\n"
"path does.");

static PyObject *scan(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != 4) {
        PyErr_SetString(PyExc_TypeError, "scan() takes 4 arguments");
        return NULL;
    }
    PyObject *rendered = args[1], *fragment = args[2];
    types_t types = {args[3]};
    if (!PyAnySet_Check(rendered)) {
        PyErr_SetString(PyExc_TypeError, "scan() needs `rendered` as a set or frozenset");
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(args[0], &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *result = scan_buffer((const uint8_t *)view.buf, view.len, rendered, fragment, &types);
    PyBuffer_Release(&view);
    return result;
}

PyDoc_STRVAR(render_doc,
"render(raw, /)\n"
"--\n\n"
"The BSON document `raw` (bytes or any buffer) as Relaxed Extended JSON (UTF-8 bytes). Raises\n"
"FallBackError for anything it does not handle exactly as the general path does.");

static PyObject *render(PyObject *module, PyObject *raw) {
    (void)module;
    Py_buffer view;
    if (PyObject_GetBuffer(raw, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    const uint8_t *buf = (const uint8_t *)view.buf;
    PyObject *result = NULL;
    if (check_document(buf, view.len) == 0) {
        out_t out = {NULL, 0, 0};
        if (render_document(&out, buf, 0, (size_t)view.len, 0, 0) == 0) {
            result = PyBytes_FromStringAndSize(out.data, (Py_ssize_t)out.len);
        }
        PyMem_Free(out.data);
    }
    PyBuffer_Release(&view);
    return result;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL, scan_doc},
    {"render", render, METH_O, render_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fastejson",
    .m_doc = "BSON change events to Relaxed Extended JSON in C, for the relay's hot path.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit_fastejson(void) {
    PyDateTime_IMPORT;
    if (PyDateTimeAPI == NULL) {
        return NULL;
    }
    PyObject *module = PyModule_Create(&module_def);
    if (module == NULL) {
        return NULL;
    }
    FallBackError = PyErr_NewExceptionWithDoc(
        "fastejson.FallBackError",
        "The input needs the general path: malformed, or a value this module does not render.",
        PyExc_ValueError, NULL);
    if (FallBackError == NULL ||
        PyModule_AddObjectRef(module, "FallBackError", FallBackError) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
