#pragma once

#include <c10/util/Exception.h>

#include "qdrt.h"

// Turns a qdrt error code into a c10::Error carrying the runtime's message.
#define QDEV_CHECK(EXPR)                                                          \
  do {                                                                            \
    const qdError_t __qd_err = (EXPR);                                            \
    TORCH_CHECK(__qd_err == qdSuccess, "qdev runtime error: ",                    \
                qdGetErrorString(__qd_err), " (", qdGetErrorName(__qd_err), ")"); \
  } while (0)
