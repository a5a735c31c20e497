"""Run a YoWASP tool with a larger WebAssembly stack: ``python -m qdeploy.targets.rtl.yowasp_launch SCRIPT ARGS...``
runs the tool's console script ``SCRIPT`` with ``ARGS`` as its command line.

yowasp runs the tool in wasmtime with wasmtime's default stack limit for WebAssembly frames (512 KiB), far below a
native build's 8 MiB. ABC's recursive traversals (yosys ``abc9``: their depth grows with the logic network)
exhaust it on networks of some thousands of LUTs: yosys stops with "wasm trap: call stack exhausted" where a native
yosys finishes. yowasp runs the WebAssembly in a ``threading.Thread``, so that thread gets a large native stack and
wasmtime a limit just below it; nothing else changes (same module, same compiled cache, same results)."""

from __future__ import annotations

import runpy
import sys
import threading

#: native stack of the threads the tool runs in (reserved address space; pages are committed only when used)
THREAD_STACK = 512 << 20
#: wasmtime's limit for WebAssembly frames: below the thread's stack, so host calls keep room beneath it
WASM_STACK = 448 << 20


def use_large_stack() -> None:
    """Make every wasmtime engine created from now on allow ``WASM_STACK`` of WebAssembly frames."""
    import wasmtime
    from wasmtime import _bindings

    original = wasmtime.Config.__init__

    def with_large_stack(self) -> None:
        original(self)
        # wasmtime refuses a WebAssembly stack limit above its async stack size (2 MiB by default; no async call
        # is made, so nothing is allocated for it); the Python binding has no property for it, the C API does
        _bindings.wasmtime_config_async_stack_size_set(self.ptr(), THREAD_STACK)
        self.max_wasm_stack = WASM_STACK

    wasmtime.Config.__init__ = with_large_stack
    threading.stack_size(THREAD_STACK)


def main(argv: list[str]) -> None:
    script, *arguments = argv
    use_large_stack()
    sys.argv = [script, *arguments]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
