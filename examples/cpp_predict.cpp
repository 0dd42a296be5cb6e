// cpp_predict: libkd from C++. Loads a model (a safetensors file saved by libkd, or by PyTorch with
// the spec in its metadata), or builds a small random one, and prints its predictions.
//
//   cpp_predict [MODEL.safetensors]
//
// The C handles go into std::unique_ptr with their destroy functions, and a failing status becomes
// an exception carrying kd_last_error().
#include <cstdio>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "kd.h"

namespace
{

struct model_deleter {
    void operator()(kd_model *m) const { kd_model_destroy(m); }
};
using model_ptr = std::unique_ptr<kd_model, model_deleter>;

void check(kd_status st, const char *what)
{
    if (st != KD_OK)
        throw std::runtime_error(std::string(what) + ": " + kd_strerror(st) + ": " +
                                 kd_last_error());
}

model_ptr open_model(int argc, char **argv)
{
    kd_model *m = nullptr;
    if (argc > 1)
        check(kd_model_load(argv[1], &m), "kd_model_load");
    else
        check(kd_model_create("input 16 | dense 32 | gelu | dense 4", 42, &m), "kd_model_create");
    return model_ptr(m);
}

} // namespace

int main(int argc, char **argv)
{
    try {
        model_ptr model = open_model(argc, argv);
        int64_t in = 0, out = 0, params = 0;
        check(kd_model_input_size(model.get(), &in), "kd_model_input_size");
        check(kd_model_output_size(model.get(), &out), "kd_model_output_size");
        check(kd_model_param_count(model.get(), &params), "kd_model_param_count");
        std::printf("libkd %s; model \"%s\", %lld parameters\n", kd_version(),
                    kd_model_spec(model.get()), static_cast<long long>(params));

        const int64_t batch = 3;
        std::vector<float> x(static_cast<size_t>(batch * in));
        std::vector<float> logits(static_cast<size_t>(batch * out));
        for (size_t i = 0; i < x.size(); i++) x[i] = static_cast<float>(i % 7) / 7.0f;
        check(kd_model_predict(model.get(), x.data(), batch, logits.data()), "kd_model_predict");

        for (int64_t r = 0; r < batch; r++) {
            const float *row = logits.data() + r * out;
            int64_t best = 0;
            for (int64_t c = 1; c < out; c++)
                if (row[c] > row[best]) best = c;
            std::printf("example %lld: class %lld (logit %.4f)\n", static_cast<long long>(r),
                        static_cast<long long>(best), static_cast<double>(row[best]));
        }
        return 0;
    } catch (const std::exception &e) {
        std::fprintf(stderr, "cpp_predict: %s\n", e.what());
        return 1;
    }
}
