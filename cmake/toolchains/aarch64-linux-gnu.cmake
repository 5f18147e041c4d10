# Cross compilation for aarch64 Linux with Debian's toolchain (g++-aarch64-linux-gnu):
#   cmake -S csrc/kernels -B build/kernels-aarch64 \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
# Binaries run under qemu-aarch64 (qemu-user); ctest uses it as the emulator.
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

# Static executables need no aarch64 loader or libraries at run time.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -cpu max)
