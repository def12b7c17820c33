#include "zt_kernels.h"

int zt_kernels_version(void) { return 1; }
