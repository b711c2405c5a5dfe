//! The allocator libxml2 and libxslt allocate with: mimalloc instead of
//! the C library's malloc. A transform is mostly small allocations and
//! frees (a node, a name, a text, an XPath node-set each), and under
//! glibc's malloc about a third of the instructions of a parse + two
//! transforms + serialisation went to malloc and free; mimalloc does the
//! same work in about a quarter fewer instructions in all
//! (docs/benchmarks.md). Only the libraries' allocations change: the
//! server's own stay on the global allocator.
//!
//! `AXKIT_XML_MALLOC=system` in the environment keeps the C library's
//! malloc, for valgrind's leak checks, which see only that one.

use std::ffi::{c_char, c_void, CStr};

use libmimalloc_sys::{mi_free, mi_malloc, mi_realloc};

use crate::sys;

/// Route the libraries' allocations to mimalloc. Must run before any
/// other call into them (memory one allocator gave may not be freed by
/// the other), which [`crate::call::init`] makes sure of.
pub(crate) unsafe fn install() {
    if std::env::var_os("AXKIT_XML_MALLOC").is_some_and(|v| v == "system") {
        return;
    }
    unsafe { sys::xmlMemSetup(free, malloc, realloc, strdup) };
}

unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    unsafe { mi_malloc(size) }
}

unsafe extern "C" fn realloc(p: *mut c_void, size: usize) -> *mut c_void {
    unsafe { mi_realloc(p, size) }
}

unsafe extern "C" fn free(p: *mut c_void) {
    unsafe { mi_free(p) }
}

unsafe extern "C" fn strdup(s: *const c_char) -> *mut c_char {
    let bytes = unsafe { CStr::from_ptr(s) }.to_bytes_with_nul();
    let p = unsafe { mi_malloc(bytes.len()) }.cast::<u8>();
    if !p.is_null() {
        unsafe { p.copy_from_nonoverlapping(bytes.as_ptr(), bytes.len()) };
    }
    p.cast()
}
