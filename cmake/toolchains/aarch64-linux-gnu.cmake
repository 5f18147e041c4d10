# Cross compilation for aarch64 Linux with Debian's toolchain (g++-aarch64-linux-gnu):
#   cmake -S csrc/kernels -B build/kernels-aarch64 \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(QDEV_AARCH64_TRIPLE aarch64-linux-gnu CACHE STRING "GNU triple of the cross toolchain")
set(CMAKE_C_COMPILER ${QDEV_AARCH64_TRIPLE}-gcc)
set(CMAKE_CXX_COMPILER ${QDEV_AARCH64_TRIPLE}-g++)

set(CMAKE_FIND_ROOT_PATH /usr/${QDEV_AARCH64_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# ctest runs the binaries under qemu-user; -L points it at the aarch64 loader and
# libraries of dynamically linked ones (tools/test_kernels_aarch64.sh links statically).
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -cpu max -L /usr/${QDEV_AARCH64_TRIPLE})
