/* An ONNX file writer (https://onnx.ai/onnx/repo-docs/IR.html): a graph built node by node, then
 * saved atomically. It knows tensors, nodes and attributes, nothing of models: nn/onnx_export.c
 * turns a model into calls of this. The protobuf encoding is libprotobuf-c's, over the messages of
 * io/onnx.proto, which protoc-c compiles at build time. */
#ifndef KDI_ONNX_H
#define KDI_ONNX_H

#include <stdint.h>

#include "kd.h"

/* The format this writer speaks: IR version 8 and the default domain's operator set 17, the first
 * with LayerNormalization (ONNX 1.12, Debian 12's python3-onnx). */
#define KDI_ONNX_IR_VERSION 8
#define KDI_ONNX_OPSET 17

typedef struct kdi_onnx kdi_onnx;

/* Every call below copies what it is given. A failing call makes the writer fail from then on:
 * the exporter may check only kdi_onnx_save's status (each call still returns it). */
kd_status kdi_onnx_create(kdi_onnx **out);
void kdi_onnx_destroy(kdi_onnx *o);

/* A new tensor name, base followed by a number unique in this graph (owned by o); NULL once the
 * writer has failed. */
const char *kdi_onnx_name(kdi_onnx *o, const char *base);

/* Initializers (constant tensors): float32 or int64 data of ndim dims, row-major. */
kd_status kdi_onnx_tensor(kdi_onnx *o, const char *name, const float *data, int32_t ndim,
                          const int64_t *dims);
kd_status kdi_onnx_tensor_i64(kdi_onnx *o, const char *name, const int64_t *data, int32_t ndim,
                              const int64_t *dims);

/* An initializer of small integers (ONNX's int32_data): type is ONNX's TensorProto.DataType,
 * KDI_ONNX_INT8, KDI_ONNX_UINT8 or KDI_ONNX_INT32. */
enum {
    KDI_ONNX_FLOAT = 1,
    KDI_ONNX_UINT8 = 2,
    KDI_ONNX_INT8 = 3,
    KDI_ONNX_INT32 = 6,
    KDI_ONNX_INT64 = 7
};
kd_status kdi_onnx_tensor_int(kdi_onnx *o, const char *name, int32_t type, const int32_t *data,
                              int32_t ndim, const int64_t *dims);

/* A node of the default domain: op (ONNX's operator name) from inputs to one output. The
 * attribute calls add to the last node added. */
kd_status kdi_onnx_node(kdi_onnx *o, const char *op, const char *const *inputs, int32_t n,
                        const char *output);
kd_status kdi_onnx_attr_int(kdi_onnx *o, const char *name, int64_t value);
kd_status kdi_onnx_attr_ints(kdi_onnx *o, const char *name, const int64_t *values, int32_t n);
kd_status kdi_onnx_attr_float(kdi_onnx *o, const char *name, float value);

/* The graph's float32 inputs and outputs; a dimension < 0 is the symbolic "batch". */
kd_status kdi_onnx_input(kdi_onnx *o, const char *name, int32_t ndim, const int64_t *dims);
kd_status kdi_onnx_output(kdi_onnx *o, const char *name, int32_t ndim, const int64_t *dims);
/* A metadata_props entry of the model. */
kd_status kdi_onnx_meta(kdi_onnx *o, const char *key, const char *value);

/* Encodes the model (graph named graph) and writes it to path atomically (io/atomic.h). */
kd_status kdi_onnx_save(kdi_onnx *o, const char *graph, const char *path);

#endif
