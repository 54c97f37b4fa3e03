/* The C hello of `make bench`: built with Debian's clang for wasm32-wasi against
 * wasi-libc (`clang --target=wasm32-wasi -O2`), run as a WASI preview 1 module. */
#include <stdio.h>

int main(void) {
    puts("hello from c");
    return 0;
}
