#pragma once

// Symbols the Python bindings need from libtorch_qdev.so; everything else
// stays hidden.
#define QDEV_EXPORT __attribute__((visibility("default")))
