#include <string.h>

#include "nn/layers/layers.h"

static const struct {
    const char *kind;
    kdi_layer_create_fn create;
} registry[] = {
    {"dense", kdi_dense_create},
    {"linear", kdi_dense_create},
    {"relu", kdi_relu_create},
    {"leakyrelu", kdi_leakyrelu_create},
    {"gelu", kdi_gelu_create},
    {"tanh", kdi_tanh_create},
    {"sigmoid", kdi_sigmoid_create},
    {"dropout", kdi_dropout_create},
    {"conv", kdi_conv_create},
    {"maxpool", kdi_maxpool_create},
    {"avgpool", kdi_avgpool_create},
    {"gap", kdi_gap_create},
    {"bn", kdi_bn_create},
    {"layernorm", kdi_layernorm_create},
    {"flatten", kdi_flatten_create},
    {"residual", kdi_residual_create},
    {"embed", kdi_embed_create},
    {"posembed", kdi_posembed_create},
    {"attention", kdi_attention_create},
    {"lmhead", kdi_lmhead_create},
    {"quantize", kdi_quantize_create},
    {"dequantize", kdi_dequantize_create},
    {"qdense", kdi_qdense_create},
    {"qconv", kdi_qconv_create},
    {"qmaxpool", kdi_qmaxpool_create},
    {"qflatten", kdi_qflatten_create},
};

kdi_layer_create_fn kdi_layer_find(const char *kind)
{
    for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
        if (strcmp(registry[i].kind, kind) == 0) return registry[i].create;
    return NULL;
}
