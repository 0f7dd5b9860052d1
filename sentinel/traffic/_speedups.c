/* Compiled parts of the capture fast path, each with a Python twin of the same contract that is
 * used when this module is not built (and that the tests compare it with):
 *
 * - walk: following the chain of classic pcap record headers (capture._walk_python). Each record's
 *   start depends on the length field of the one before, so it cannot be vectorised; in Python it
 *   cost 0.15-0.2 us a record, a fifth of the whole analysis.
 * - decode_headers: link, network and transport header fields of a batch of records in one pass
 *   (decode._decode_headers_numpy, some 25 numpy passes over the batch).
 * - index_get, index_cells, index_place, set_contains, set_place: lookups and insertions of a batch
 *   of keys in the open-addressing tables of table.py (U64Index, U64Set), one probe chain at a time
 *   where numpy needs a round of gathers per probe step (the numpy rounds kept in those classes).
 * - distinct: the distinct keys of a batch in the order they first occur, with each row's group, by
 *   one pass through a hash table (table.first_seen: np.unique's sort, then a sort back to row order).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t read_u32(const unsigned char *p, int swap)
{
    uint32_t v;
    memcpy(&v, p, 4); /* records are not aligned */
    return swap ? __builtin_bswap32(v) : v;
}

PyDoc_STRVAR(walk_doc,
"walk(buf, start, offsets, fields, swap, max_record) -> (count, next)\n\n"
"Follow the records of `buf` from offset `start`. For each record whose 16-byte header lies in\n"
"`buf`, write its offset to `offsets` (int64) and its four header words, in native order (byte-\n"
"swapped when `swap`), to `fields` (uint32, four per record). Stop when `offsets` or `fields` is\n"
"full, at the first header `buf` does not hold whole, or after a record claiming more than\n"
"`max_record` bytes (the caller reports it as corrupt). Returns the records written and the offset\n"
"of the record after the last one written (beyond the end of `buf` when its data is not all there).");

static PyObject *walk(PyObject *self, PyObject *args)
{
    Py_buffer buf, offsets, fields;
    Py_ssize_t start;
    int swap;
    unsigned long max_record;
    if (!PyArg_ParseTuple(args, "y*nw*w*pk", &buf, &start, &offsets, &fields, &swap, &max_record))
        return NULL;
    PyObject *result = NULL;
    if (start < 0) {
        PyErr_SetString(PyExc_ValueError, "start must not be negative");
        goto done;
    }
    Py_ssize_t capacity = offsets.len / 8;
    if (fields.len / 16 < capacity)
        capacity = fields.len / 16;
    const unsigned char *b = buf.buf;
    int64_t *off = offsets.buf;
    uint32_t *fld = fields.buf;
    Py_ssize_t n = buf.len, pos = start, count = 0;
    Py_BEGIN_ALLOW_THREADS
    while (count < capacity && pos <= n - 16) {
        const unsigned char *h = b + pos;
        uint32_t caplen = read_u32(h + 8, swap);
        off[count] = pos;
        fld[4 * count] = read_u32(h, swap);
        fld[4 * count + 1] = read_u32(h + 4, swap);
        fld[4 * count + 2] = caplen;
        fld[4 * count + 3] = read_u32(h + 12, swap);
        count++;
        pos += 16 + (Py_ssize_t)caplen;
        if (caplen > max_record)
            break;
    }
    Py_END_ALLOW_THREADS
    result = Py_BuildValue("nn", count, pos);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&offsets);
    PyBuffer_Release(&fields);
    return result;
}

/* --- decode_headers ---------------------------------------------------------------------- */

enum { PREFETCH = 16 };
enum { ETH = 1, SLL = 113, SLL2 = 276, NULL_LT = 0, LOOP = 108 };
enum { ET_IPV4 = 0x0800, ET_IPV6 = 0x86DD, ET_ARP = 0x0806 };
enum { P_TCP = 6, P_UDP = 17, P_ICMP = 1, P_ICMPV6 = 58 };
/* The output columns, in the order of decode.HEADER_COLUMNS. */
enum { C_SRC, C_DST, C_V6, C_PROTO, C_TCP, C_UDP, C_ICMP, C_SPORT, C_DPORT, C_FLAGS, C_ICMP_TYPE,
       C_IP_LEN, C_ICMP_FRAGMENT_END, C_PSTART, C_PLEN, C_ARP, C_L3, N_COLUMNS };

/* Reads inside the buffer; outside it 0 (the Python twin reads clipped garbage there, which its
 * masks discard: every field written below is read only where its mask says the bytes are in the
 * record, so both give the same columns). */
static inline int64_t u8_at(const unsigned char *b, int64_t n, int64_t i)
{
    return (i >= 0 && i < n) ? b[i] : 0;
}

static inline int64_t be16_at(const unsigned char *b, int64_t n, int64_t i)
{
    return (u8_at(b, n, i) << 8) | u8_at(b, n, i + 1);
}

static inline int64_t be32_at(const unsigned char *b, int64_t n, int64_t i)
{
    return (be16_at(b, n, i) << 16) | be16_at(b, n, i + 2);
}

static inline int is_raw(int64_t lt)
{
    return lt == 101 || lt == 12 || lt == 14 || lt == 228 || lt == 229;
}

PyDoc_STRVAR(decode_doc,
"decode_headers(buf, data, caplen, linktype, out)\n\n"
"For each record i (its bytes at buf[data[i]:data[i] + caplen[i]], link type linktype[i]; int64\n"
"arrays), write its header fields to out[c * n + i] (int64, N_COLUMNS x n), columns in the order of\n"
"decode.HEADER_COLUMNS. Fields that do not apply are 0 (icmp_type -1); IPv6 addresses are left to the\n"
"caller (v6 says which records have them).");

static PyObject *decode_headers(PyObject *self, PyObject *args)
{
    Py_buffer buf, data, caplen, linktype, out;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*", &buf, &data, &caplen, &linktype, &out))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t count = data.len / 8;
    if (caplen.len / 8 != count || linktype.len / 8 != count || out.len / 8 != count * N_COLUMNS) {
        PyErr_SetString(PyExc_ValueError, "data, caplen, linktype and out do not agree in size");
        goto done;
    }
    const unsigned char *b = buf.buf;
    const int64_t n = buf.len;
    const int64_t *d = data.buf, *cap = caplen.buf, *lts = linktype.buf;
    int64_t *o = out.buf;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < count; i++) {
        /* the batch's records are far apart and no longer in cache: ask for the headers a few records
         * ahead, so that their loads overlap instead of waiting one after another */
        if (i + PREFETCH < count && d[i + PREFETCH] >= 0 && d[i + PREFETCH] + 64 < n) {
            __builtin_prefetch(b + d[i + PREFETCH]);
            __builtin_prefetch(b + d[i + PREFETCH] + 63);
        }
        const int64_t at = d[i], end = at + cap[i], lt = lts[i];
        int64_t ethertype = 0, l3 = at;
        if (lt == ETH) {
            ethertype = be16_at(b, n, at + 12);
            l3 = at + 14;
            if (ethertype == 0x8100 || ethertype == 0x88A8) {
                ethertype = be16_at(b, n, at + 16);
                l3 += 4;
                if (ethertype == 0x8100) {
                    ethertype = be16_at(b, n, at + 20);
                    l3 += 4;
                }
            }
        } else if (lt == SLL) {
            ethertype = be16_at(b, n, at + 14);
            l3 = at + 16;
        } else if (lt == SLL2) {
            ethertype = be16_at(b, n, at);
            l3 = at + 20;
        } else if (is_raw(lt)) {
            int64_t version = u8_at(b, n, at) >> 4;
            ethertype = version == 4 ? ET_IPV4 : version == 6 ? ET_IPV6 : 0;
        } else if (lt == NULL_LT || lt == LOOP) {
            int64_t family = lt == NULL_LT ? u8_at(b, n, at) : u8_at(b, n, at + 3);
            ethertype = family == 2 ? ET_IPV4 : (family == 24 || family == 28 || family == 30) ? ET_IPV6 : 0;
            l3 = at + 4;
        }
        const int64_t ver_ihl = u8_at(b, n, l3), version = ver_ihl >> 4, ihl = (ver_ihl & 15) * 4;
        const int64_t total = be16_at(b, n, l3 + 2);
        const int v4 = ethertype == ET_IPV4 && version == 4 && ihl >= 20 && l3 + 20 <= end && total >= ihl;
        const int v6 = ethertype == ET_IPV6 && version == 6 && l3 + 40 <= end;
        const int64_t fragment_offset = (be16_at(b, n, l3 + 6) & 0x1FFF) * 8;
        const int first_fragment = fragment_offset == 0;
        const int64_t proto = v4 ? u8_at(b, n, l3 + 9) : v6 ? u8_at(b, n, l3 + 6) : -1;
        const int64_t ip_len = v4 ? total : v6 ? 40 + be16_at(b, n, l3 + 4) : 0;
        const int64_t ip_end = l3 + ip_len < end ? l3 + ip_len : end;
        const int64_t l4 = v4 ? l3 + ihl : l3 + 40;
        const int l4_ok = (v4 && first_fragment) || v6;
        const int64_t doff = (u8_at(b, n, l4 + 12) >> 4) * 4;
        const int tcp = l4_ok && proto == P_TCP && l4 + 20 <= end && doff >= 20;
        const int udp = l4_ok && proto == P_UDP && l4 + 8 <= end;
        const int icmp = l4_ok && ((proto == P_ICMP && v4) || (proto == P_ICMPV6 && v6)) && l4 + 4 <= end;
        const int ports = tcp || udp;
        const int64_t pstart = tcp ? l4 + doff : l4 + 8;
        int64_t plen = ports ? ip_end - pstart : 0;
        int arp = 0;
        if (ethertype == ET_ARP && l3 + 28 <= end)
            arp = be16_at(b, n, l3) == 1 && be16_at(b, n, l3 + 2) == ET_IPV4 && u8_at(b, n, l3 + 4) == 6 &&
                  u8_at(b, n, l3 + 5) == 4;
        o[C_SRC * count + i] = v4 ? be32_at(b, n, l3 + 12) : 0;
        o[C_DST * count + i] = v4 ? be32_at(b, n, l3 + 16) : 0;
        o[C_V6 * count + i] = v6;
        o[C_PROTO * count + i] = proto;
        o[C_TCP * count + i] = tcp;
        o[C_UDP * count + i] = udp;
        o[C_ICMP * count + i] = icmp;
        o[C_SPORT * count + i] = ports ? be16_at(b, n, l4) : 0;
        o[C_DPORT * count + i] = ports ? be16_at(b, n, l4 + 2) : 0;
        o[C_FLAGS * count + i] = tcp ? u8_at(b, n, l4 + 13) : 0;
        o[C_ICMP_TYPE * count + i] = icmp ? u8_at(b, n, l4) : -1;
        o[C_IP_LEN * count + i] = (v4 || v6) ? ip_len : 0;
        o[C_ICMP_FRAGMENT_END * count + i] = (v4 && !first_fragment && proto == P_ICMP) ? fragment_offset + total : 0;
        o[C_PSTART * count + i] = pstart;
        o[C_PLEN * count + i] = plen > 0 ? plen : 0;
        o[C_ARP * count + i] = arp;
        o[C_L3 * count + i] = l3;
    }
    Py_END_ALLOW_THREADS
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&buf);
    PyBuffer_Release(&data);
    PyBuffer_Release(&caplen);
    PyBuffer_Release(&linktype);
    PyBuffer_Release(&out);
    return result;
}

/* --- open-addressing tables (table.U64Index, table.U64Set) ---------------------------------- */

/* A table is a power-of-two array of cells, probed linearly from key & mask. U64Index: uint64 keys
 * beside int64 values, a negative value marks an empty cell. U64Set: uint64 keys alone, 0 marks an
 * empty cell (the caller stores a key of 0 as another value). Tables are kept at most half full,
 * so a probe chain always meets an empty cell; the loops are bounded by the size regardless. */

typedef struct {
    Py_buffer keys, values, query, out;
} TableArgs;

static void release(TableArgs *a)
{
    PyBuffer_Release(&a->keys);
    PyBuffer_Release(&a->values);
    PyBuffer_Release(&a->query);
    PyBuffer_Release(&a->out);
}

/* Parses (keys, values, query, out) for an index, or (cells, query, out) when `with_values` is 0. */
static int table_args(PyObject *args, TableArgs *a, int with_values, int out_width)
{
    memset(a, 0, sizeof *a);
    int ok = with_values ? PyArg_ParseTuple(args, "w*w*y*w*", &a->keys, &a->values, &a->query, &a->out)
                         : PyArg_ParseTuple(args, "w*y*w*", &a->keys, &a->query, &a->out);
    if (!ok)
        return 0;
    Py_ssize_t size = a->keys.len / 8;
    if (size == 0 || (size & (size - 1)) || (with_values && a->values.len != a->keys.len) ||
        a->out.len < (a->query.len / 8) * out_width) {
        PyErr_SetString(PyExc_ValueError, "table size must be a power of two; values, query and out must fit it");
        release(a);
        return 0;
    }
    return 1;
}

enum { LOOKAHEAD = 8 };

/* The cell holding `key` in an index, -1 if absent. */
static inline int64_t index_cell(const uint64_t *keys, const int64_t *values, uint64_t mask, uint64_t key)
{
    uint64_t pos = key & mask;
    for (uint64_t step = 0; step <= mask && values[pos] >= 0; step++, pos = (pos + 1) & mask)
        if (keys[pos] == key)
            return (int64_t)pos;
    return -1;
}

/* index_get and index_cells: one loop, writing the value or the cell of each key. */
static PyObject *index_lookup(PyObject *args, int cells)
{
    TableArgs a;
    if (!table_args(args, &a, 1, 8))
        return NULL;
    const uint64_t *keys = a.keys.buf, *q = a.query.buf;
    const int64_t *values = a.values.buf;
    int64_t *out = a.out.buf;
    const uint64_t mask = (uint64_t)(a.keys.len / 8) - 1;
    const Py_ssize_t n = a.query.len / 8;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + LOOKAHEAD < n) {
            __builtin_prefetch(values + (q[i + LOOKAHEAD] & mask));
            __builtin_prefetch(keys + (q[i + LOOKAHEAD] & mask));
        }
        int64_t cell = index_cell(keys, values, mask, q[i]);
        out[i] = cells || cell < 0 ? cell : values[cell];
    }
    Py_END_ALLOW_THREADS
    release(&a);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(index_get_doc,
"index_get(keys, values, query, out): out[i] = the value of query[i] in the table, -1 if absent.");

static PyObject *index_get(PyObject *self, PyObject *args)
{
    return index_lookup(args, 0);
}

PyDoc_STRVAR(index_cells_doc,
"index_cells(keys, values, query, out): out[i] = the cell holding query[i], -1 if absent.");

static PyObject *index_cells(PyObject *self, PyObject *args)
{
    return index_lookup(args, 1);
}

PyDoc_STRVAR(index_place_doc,
"index_place(keys, values, new_keys, new_values): store each new key (distinct, absent) with its\n"
"value (not negative) in the first empty cell of its probe chain. Returns how many were stored.");

static PyObject *index_place(PyObject *self, PyObject *args)
{
    TableArgs a;
    if (!table_args(args, &a, 1, 8))
        return NULL;
    uint64_t *keys = a.keys.buf;
    int64_t *values = a.values.buf;
    const uint64_t *q = a.query.buf;
    const int64_t *v = a.out.buf; /* here: the values to store */
    const uint64_t mask = (uint64_t)(a.keys.len / 8) - 1;
    const Py_ssize_t n = a.query.len / 8;
    Py_ssize_t stored = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t pos = q[i] & mask, step = 0;
        while (step <= mask && values[pos] >= 0) {
            pos = (pos + 1) & mask;
            step++;
        }
        if (step > mask)
            break; /* full: the caller keeps tables half empty, so this does not happen */
        keys[pos] = q[i];
        values[pos] = v[i];
        stored++;
    }
    Py_END_ALLOW_THREADS
    release(&a);
    return PyLong_FromSsize_t(stored);
}

PyDoc_STRVAR(set_contains_doc,
"set_contains(cells, query, out): out[i] (uint8) = 1 if query[i] (never 0) is in the set.");

static PyObject *set_contains(PyObject *self, PyObject *args)
{
    TableArgs a;
    if (!table_args(args, &a, 0, 1))
        return NULL;
    const uint64_t *cells = a.keys.buf, *q = a.query.buf;
    uint8_t *out = a.out.buf;
    const uint64_t mask = (uint64_t)(a.keys.len / 8) - 1;
    const Py_ssize_t n = a.query.len / 8;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        if (i + LOOKAHEAD < n)
            __builtin_prefetch(cells + (q[i + LOOKAHEAD] & mask));
        uint64_t pos = q[i] & mask;
        uint8_t found = 0;
        for (uint64_t step = 0; step <= mask && cells[pos] != 0; step++, pos = (pos + 1) & mask)
            if (cells[pos] == q[i]) {
                found = 1;
                break;
            }
        out[i] = found;
    }
    Py_END_ALLOW_THREADS
    release(&a);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_place_doc,
"set_place(cells, new_keys): store each new key (distinct, absent, never 0) in the first empty cell\n"
"of its probe chain. Returns how many were stored.");

static PyObject *set_place(PyObject *self, PyObject *args)
{
    Py_buffer cells_buf, query;
    if (!PyArg_ParseTuple(args, "w*y*", &cells_buf, &query))
        return NULL;
    Py_ssize_t size = cells_buf.len / 8;
    if (size == 0 || (size & (size - 1))) {
        PyErr_SetString(PyExc_ValueError, "table size must be a power of two");
        PyBuffer_Release(&cells_buf);
        PyBuffer_Release(&query);
        return NULL;
    }
    uint64_t *cells = cells_buf.buf;
    const uint64_t *q = query.buf;
    const uint64_t mask = (uint64_t)size - 1;
    const Py_ssize_t n = query.len / 8;
    Py_ssize_t stored = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        uint64_t pos = q[i] & mask, step = 0;
        while (step <= mask && cells[pos] != 0) {
            pos = (pos + 1) & mask;
            step++;
        }
        if (step > mask)
            break;
        cells[pos] = q[i];
        stored++;
    }
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&cells_buf);
    PyBuffer_Release(&query);
    return PyLong_FromSsize_t(stored);
}

PyDoc_STRVAR(distinct_doc,
"distinct(keys, first, inverse): the distinct keys in the order they first occur: first[g] = the row\n"
"where group g first occurs, inverse[i] = the group of row i. Returns the number of groups.");

static PyObject *distinct(PyObject *self, PyObject *args)
{
    Py_buffer keys_buf, first_buf, inverse_buf;
    if (!PyArg_ParseTuple(args, "y*w*w*", &keys_buf, &first_buf, &inverse_buf))
        return NULL;
    const Py_ssize_t n = keys_buf.len / 8;
    PyObject *result = NULL;
    int64_t *cells = NULL; /* per cell: the row of the key's first occurrence, -1 when empty */
    uint64_t size = 16;
    int bits = 4;
    while (size < 2 * (uint64_t)n) {
        size <<= 1;
        bits++;
    }
    if (first_buf.len < n * 8 || inverse_buf.len < n * 8) {
        PyErr_SetString(PyExc_ValueError, "first and inverse must have a row for each key");
        goto done;
    }
    cells = PyMem_Malloc(size * sizeof *cells);
    if (cells == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    memset(cells, 0xFF, size * sizeof *cells);
    const uint64_t *keys = keys_buf.buf;
    int64_t *first = first_buf.buf, *inverse = inverse_buf.buf;
    const uint64_t mask = size - 1;
    int64_t groups = 0;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        /* the keys may be small integers as well as hashes: the high bits of a multiplicative hash */
        uint64_t pos = (keys[i] * 0x9E3779B97F4A7C15ULL) >> (64 - bits);
        while (cells[pos] >= 0 && keys[cells[pos]] != keys[i])
            pos = (pos + 1) & mask; /* never full: at least twice as many cells as keys */
        if (cells[pos] < 0) {
            cells[pos] = i;
            first[groups] = i;
            inverse[i] = groups++;
        } else {
            inverse[i] = inverse[cells[pos]];
        }
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromLongLong(groups);
done:
    PyMem_Free(cells);
    PyBuffer_Release(&keys_buf);
    PyBuffer_Release(&first_buf);
    PyBuffer_Release(&inverse_buf);
    return result;
}

static PyMethodDef methods[] = {
    {"distinct", distinct, METH_VARARGS, distinct_doc},
    {"index_get", index_get, METH_VARARGS, index_get_doc},
    {"index_cells", index_cells, METH_VARARGS, index_cells_doc},
    {"index_place", index_place, METH_VARARGS, index_place_doc},
    {"set_contains", set_contains, METH_VARARGS, set_contains_doc},
    {"set_place", set_place, METH_VARARGS, set_place_doc},
    {"walk", walk, METH_VARARGS, walk_doc},
    {"decode_headers", decode_headers, METH_VARARGS, decode_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_speedups", "Compiled parts of the capture fast path (see capture.py and decode.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__speedups(void)
{
    return PyModule_Create(&module);
}
