;; The smallest useful WebAssembly module: it prints one line and exits 0.
;; It is WASI preview 1 (a "core module"), written by hand in the text format (WAT).
;; `wat2wasm hello.wat -o hello.wasm` turns it into the binary that runs (about 150 bytes).

(module
  ;; Imports: the only way a module can touch the outside world. This one asks its host
  ;; (warden's wasmtime) for one function of WASI preview 1: fd_write(fd, iovs, iovs_len,
  ;; nwritten) -> errno, which writes buffers to a file descriptor. fd 1 is stdout, which
  ;; every module gets, even under the `strict` profile.
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))

  ;; One page (64 KiB) of linear memory: the module's whole address space, zero-filled,
  ;; private to this instance. It is exported as "memory" because WASI reads the buffers
  ;; that fd_write is given from it.
  (memory (export "memory") 1)

  ;; The bytes to print, placed at address 16 when the module is instantiated.
  ;; "Hello from a hand-written module\n" is 33 bytes.
  (data (i32.const 16) "Hello from a hand-written module\n")

  ;; An iovec (a {pointer, length} pair of two i32s) at address 0 that describes them:
  ;; pointer 16, length 33, little-endian.
  (data (i32.const 0) "\10\00\00\00\21\00\00\00")

  ;; `_start` is what a WASI command runs: its main. Exported by that name, it takes and
  ;; returns nothing.
  (func (export "_start")
    ;; fd_write(1 = stdout, iovs at 0, 1 iovec, write the byte count at address 8)
    (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))
    ;; fd_write returns an errno (0 = success); this module ignores it.
    drop)
    ;; Returning from _start ends the program with exit status 0.
)
