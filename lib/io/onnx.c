/* The ONNX writer: protobuf-c messages (io/onnx.pb-c.h, generated from io/onnx.proto) carved from
 * an arena that kdi_onnx_destroy frees at once, encoded by protobuf_c_message_pack into one buffer
 * and written atomically. */
#include "io/onnx.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/atomic.h"
#include "io/onnx.pb-c.h"

#define MAX_ATTRS 8

typedef struct block {
    struct block *next;
    max_align_t data[];
} block;

/* A growable array of message pointers, the form protobuf-c's repeated fields take. */
typedef struct list {
    void **items;
    size_t n, cap;
} list;

struct kdi_onnx {
    block *arena;
    kd_status failed;
    int64_t names;
    list nodes, inits, inputs, outputs, meta;
    Onnx__NodeProto *last;
};

static kd_status fail(kdi_onnx *o, kd_status st)
{
    if (o->failed == KD_OK) o->failed = st;
    return o->failed; /* a name or a node before failed */
}

static void *arena(kdi_onnx *o, size_t size)
{
    if (o->failed != KD_OK) return NULL;
    block *b = kdi_calloc(1, sizeof *b + size);
    if (b == NULL) {
        fail(o, kdi_fail(KD_ERR_NOMEM, "cannot allocate %zu bytes for an ONNX graph", size));
        return NULL;
    }
    b->next = o->arena;
    o->arena = b;
    return b->data;
}

static char *copy_str(kdi_onnx *o, const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = arena(o, n);
    if (c != NULL) memcpy(c, s, n);
    return c;
}

static kd_status push(kdi_onnx *o, list *l, void *item)
{
    if (item == NULL) return fail(o, KD_ERR_NOMEM);
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        void **items = kdi_realloc(l->items, cap * sizeof *items);
        if (items == NULL)
            return fail(o, kdi_fail(KD_ERR_NOMEM, "cannot grow a list of the ONNX graph"));
        l->items = items;
        l->cap = cap;
    }
    l->items[l->n++] = item;
    return KD_OK;
}

kd_status kdi_onnx_create(kdi_onnx **out)
{
    *out = kdi_calloc(1, sizeof **out);
    return *out == NULL ? kdi_fail(KD_ERR_NOMEM, "cannot allocate an ONNX writer") : KD_OK;
}

void kdi_onnx_destroy(kdi_onnx *o)
{
    if (o == NULL) return;
    for (block *b = o->arena, *next; b != NULL; b = next) {
        next = b->next;
        kdi_free(b);
    }
    list *lists[] = {&o->nodes, &o->inits, &o->inputs, &o->outputs, &o->meta};
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) kdi_free(lists[i]->items);
    kdi_free(o);
}

const char *kdi_onnx_name(kdi_onnx *o, const char *base)
{
    if (o->failed != KD_OK) return NULL;
    char name[256];
    snprintf(name, sizeof name, "%s_%lld", base, (long long)o->names++);
    return copy_str(o, name);
}

static Onnx__TensorProto *tensor(kdi_onnx *o, const char *name, int32_t type, int32_t ndim,
                                 const int64_t *dims, int64_t *count)
{
    Onnx__TensorProto *t = arena(o, sizeof *t);
    int64_t *d = arena(o, sizeof *d * (size_t)(ndim > 0 ? ndim : 1));
    char *nm = copy_str(o, name);
    if (t == NULL || d == NULL || nm == NULL) return NULL;
    *t = (Onnx__TensorProto)ONNX__TENSOR_PROTO__INIT;
    *count = 1;
    for (int32_t i = 0; i < ndim; i++) *count *= d[i] = dims[i];
    t->n_dims = (size_t)ndim;
    t->dims = d;
    t->has_data_type = 1;
    t->data_type = type;
    t->name = nm;
    return t;
}

kd_status kdi_onnx_tensor(kdi_onnx *o, const char *name, const float *data, int32_t ndim,
                          const int64_t *dims)
{
    if (o->failed != KD_OK) return o->failed;
    int64_t n;
    Onnx__TensorProto *t = tensor(o, name, ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT, ndim, dims, &n);
    float *v = t != NULL ? arena(o, sizeof *v * (size_t)n) : NULL;
    if (v == NULL) return fail(o, KD_ERR_NOMEM);
    /* float_data, not raw_data: protobuf writes it little-endian whatever the host. */
    memcpy(v, data, sizeof *v * (size_t)n);
    t->n_float_data = (size_t)n;
    t->float_data = v;
    return push(o, &o->inits, t);
}

kd_status kdi_onnx_tensor_i64(kdi_onnx *o, const char *name, const int64_t *data, int32_t ndim,
                              const int64_t *dims)
{
    if (o->failed != KD_OK) return o->failed;
    int64_t n;
    Onnx__TensorProto *t = tensor(o, name, ONNX__TENSOR_PROTO__DATA_TYPE__INT64, ndim, dims, &n);
    int64_t *v = t != NULL ? arena(o, sizeof *v * (size_t)n) : NULL;
    if (v == NULL) return fail(o, KD_ERR_NOMEM);
    memcpy(v, data, sizeof *v * (size_t)n);
    t->n_int64_data = (size_t)n;
    t->int64_data = v;
    return push(o, &o->inits, t);
}

kd_status kdi_onnx_tensor_int(kdi_onnx *o, const char *name, int32_t type, const int32_t *data,
                              int32_t ndim, const int64_t *dims)
{
    if (o->failed != KD_OK) return o->failed;
    int64_t n;
    Onnx__TensorProto *t = tensor(o, name, type, ndim, dims, &n);
    if (t != NULL && (type == ONNX__TENSOR_PROTO__DATA_TYPE__INT8 ||
                      type == ONNX__TENSOR_PROTO__DATA_TYPE__UINT8)) {
        /* One byte a value in raw_data (bytes have no byte order): int32_data would take up to
         * ten bytes for each negative weight. */
        uint8_t *b = arena(o, (size_t)(n > 0 ? n : 1));
        if (b == NULL) return fail(o, KD_ERR_NOMEM);
        for (int64_t i = 0; i < n; i++) b[i] = (uint8_t)data[i];
        t->has_raw_data = 1;
        t->raw_data.len = (size_t)n;
        t->raw_data.data = b;
        return push(o, &o->inits, t);
    }
    int32_t *v = t != NULL ? arena(o, sizeof *v * (size_t)(n > 0 ? n : 1)) : NULL;
    if (v == NULL) return fail(o, KD_ERR_NOMEM);
    memcpy(v, data, sizeof *v * (size_t)n);
    t->n_int32_data = (size_t)n;
    t->int32_data = v;
    return push(o, &o->inits, t);
}

kd_status kdi_onnx_node(kdi_onnx *o, const char *op, const char *const *inputs, int32_t n,
                        const char *output)
{
    if (o->failed != KD_OK) return o->failed;
    Onnx__NodeProto *node = arena(o, sizeof *node);
    char **in = arena(o, sizeof *in * (size_t)(n > 0 ? n : 1));
    char **out = arena(o, sizeof *out);
    Onnx__AttributeProto **attrs = arena(o, sizeof *attrs * MAX_ATTRS);
    if (node == NULL || in == NULL || out == NULL || attrs == NULL) return fail(o, KD_ERR_NOMEM);
    *node = (Onnx__NodeProto)ONNX__NODE_PROTO__INIT;
    for (int32_t i = 0; i < n; i++) in[i] = copy_str(o, inputs[i]);
    out[0] = copy_str(o, output);
    node->op_type = copy_str(o, op);
    node->name = copy_str(o, output); /* one output a node: its name names the node too */
    if (o->failed != KD_OK) return o->failed;
    node->n_input = (size_t)n;
    node->input = in;
    node->n_output = 1;
    node->output = out;
    node->attribute = attrs;
    o->last = node;
    return push(o, &o->nodes, node);
}

static Onnx__AttributeProto *attr(kdi_onnx *o, const char *name,
                                  Onnx__AttributeProto__AttributeType type)
{
    if (o->failed != KD_OK) return NULL;
    if (o->last == NULL || o->last->n_attribute == MAX_ATTRS) {
        fail(o, kdi_fail(KD_ERR_STATE, "ONNX attribute '%s' without a node to hold it", name));
        return NULL;
    }
    Onnx__AttributeProto *a = arena(o, sizeof *a);
    char *nm = copy_str(o, name);
    if (a == NULL || nm == NULL) return NULL;
    *a = (Onnx__AttributeProto)ONNX__ATTRIBUTE_PROTO__INIT;
    a->name = nm;
    a->has_type = 1;
    a->type = type;
    o->last->attribute[o->last->n_attribute++] = a;
    return a;
}

kd_status kdi_onnx_attr_int(kdi_onnx *o, const char *name, int64_t value)
{
    Onnx__AttributeProto *a = attr(o, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT);
    if (a == NULL) return fail(o, KD_ERR_NOMEM);
    a->has_i = 1;
    a->i = value;
    return KD_OK;
}

kd_status kdi_onnx_attr_ints(kdi_onnx *o, const char *name, const int64_t *values, int32_t n)
{
    Onnx__AttributeProto *a = attr(o, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS);
    int64_t *v = a != NULL ? arena(o, sizeof *v * (size_t)(n > 0 ? n : 1)) : NULL;
    if (v == NULL) return fail(o, KD_ERR_NOMEM);
    memcpy(v, values, sizeof *v * (size_t)n);
    a->n_ints = (size_t)n;
    a->ints = v;
    return KD_OK;
}

kd_status kdi_onnx_attr_float(kdi_onnx *o, const char *name, float value)
{
    Onnx__AttributeProto *a = attr(o, name, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT);
    if (a == NULL) return fail(o, KD_ERR_NOMEM);
    a->has_f = 1;
    a->f = value;
    return KD_OK;
}

static Onnx__ValueInfoProto *value_info(kdi_onnx *o, const char *name, int32_t ndim,
                                        const int64_t *dims)
{
    Onnx__ValueInfoProto *v = arena(o, sizeof *v);
    Onnx__TypeProto *type = arena(o, sizeof *type);
    Onnx__TypeProto__Tensor *tt = arena(o, sizeof *tt);
    Onnx__TensorShapeProto *shape = arena(o, sizeof *shape);
    Onnx__TensorShapeProto__Dimension **dim = arena(o, sizeof *dim * (size_t)(ndim + 1));
    if (v == NULL || type == NULL || tt == NULL || shape == NULL || dim == NULL) return NULL;
    for (int32_t i = 0; i < ndim; i++) {
        dim[i] = arena(o, sizeof *dim[i]);
        if (dim[i] == NULL) return NULL;
        *dim[i] = (Onnx__TensorShapeProto__Dimension)ONNX__TENSOR_SHAPE_PROTO__DIMENSION__INIT;
        if (dims[i] < 0) {
            dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM;
            dim[i]->dim_param = copy_str(o, "batch");
        } else {
            dim[i]->value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE;
            dim[i]->dim_value = dims[i];
        }
    }
    *shape = (Onnx__TensorShapeProto)ONNX__TENSOR_SHAPE_PROTO__INIT;
    shape->n_dim = (size_t)ndim;
    shape->dim = dim;
    *tt = (Onnx__TypeProto__Tensor)ONNX__TYPE_PROTO__TENSOR__INIT;
    tt->has_elem_type = 1;
    tt->elem_type = ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT;
    tt->shape = shape;
    *type = (Onnx__TypeProto)ONNX__TYPE_PROTO__INIT;
    type->value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE;
    type->tensor_type = tt;
    *v = (Onnx__ValueInfoProto)ONNX__VALUE_INFO_PROTO__INIT;
    v->name = copy_str(o, name);
    v->type = type;
    return o->failed == KD_OK ? v : NULL;
}

kd_status kdi_onnx_input(kdi_onnx *o, const char *name, int32_t ndim, const int64_t *dims)
{
    if (o->failed != KD_OK) return o->failed;
    return push(o, &o->inputs, value_info(o, name, ndim, dims));
}

kd_status kdi_onnx_output(kdi_onnx *o, const char *name, int32_t ndim, const int64_t *dims)
{
    if (o->failed != KD_OK) return o->failed;
    return push(o, &o->outputs, value_info(o, name, ndim, dims));
}

kd_status kdi_onnx_meta(kdi_onnx *o, const char *key, const char *value)
{
    if (o->failed != KD_OK) return o->failed;
    Onnx__StringStringEntryProto *e = arena(o, sizeof *e);
    if (e == NULL) return fail(o, KD_ERR_NOMEM);
    *e = (Onnx__StringStringEntryProto)ONNX__STRING_STRING_ENTRY_PROTO__INIT;
    e->key = copy_str(o, key);
    e->value = copy_str(o, value);
    return o->failed == KD_OK ? push(o, &o->meta, e) : o->failed;
}

typedef struct packed {
    const uint8_t *data;
    size_t size;
} packed;

static int write_packed(FILE *fp, const void *ctx)
{
    const packed *p = ctx;
    return fwrite(p->data, 1, p->size, fp) == p->size;
}

kd_status kdi_onnx_save(kdi_onnx *o, const char *graph, const char *path)
{
    Onnx__GraphProto g = ONNX__GRAPH_PROTO__INIT;
    Onnx__OperatorSetIdProto opset = ONNX__OPERATOR_SET_ID_PROTO__INIT;
    Onnx__OperatorSetIdProto *opsets[1] = {&opset};
    Onnx__ModelProto m = ONNX__MODEL_PROTO__INIT;
    g.name = copy_str(o, graph);
    if (o->failed != KD_OK) return o->failed;
    g.n_node = o->nodes.n;
    g.node = (Onnx__NodeProto **)o->nodes.items;
    g.n_initializer = o->inits.n;
    g.initializer = (Onnx__TensorProto **)o->inits.items;
    g.n_input = o->inputs.n;
    g.input = (Onnx__ValueInfoProto **)o->inputs.items;
    g.n_output = o->outputs.n;
    g.output = (Onnx__ValueInfoProto **)o->outputs.items;
    opset.domain = (char *)"";
    opset.has_version = 1;
    opset.version = KDI_ONNX_OPSET;
    m.has_ir_version = 1;
    m.ir_version = KDI_ONNX_IR_VERSION;
    m.n_opset_import = 1;
    m.opset_import = opsets;
    m.producer_name = (char *)"libkd";
    m.producer_version = (char *)kd_version();
    m.graph = &g;
    m.n_metadata_props = o->meta.n;
    m.metadata_props = (Onnx__StringStringEntryProto **)o->meta.items;
    size_t size = onnx__model_proto__get_packed_size(&m);
    /* Protobuf caps a message at 2 GiB; ONNX puts larger weights in external files, which this
     * writer does not do. */
    if (size > INT32_MAX)
        return kdi_fail(KD_ERR_UNSUPPORTED,
                        "%s: the ONNX file would be %zu bytes, over protobuf's 2 GiB", path, size);
    uint8_t *buf = kdi_malloc(size > 0 ? size : 1);
    if (buf == NULL) return kdi_fail(KD_ERR_NOMEM, "cannot allocate %zu bytes for %s", size, path);
    packed p = {buf, onnx__model_proto__pack(&m, buf)};
    kd_status st = kdi_write_atomic(path, write_packed, &p);
    kdi_free(buf);
    return st;
}
