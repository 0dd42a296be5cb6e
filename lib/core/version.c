#include "kd.h"

const char *kd_version(void) { return KD_VERSION_STRING; }

int32_t kd_version_number(void) { return KD_VERSION_NUMBER; }
