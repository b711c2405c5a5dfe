//! Loading libxml2, libxslt and libexslt at run time (`dlopen`), once per
//! process, the first time the engine is needed, rather than linking them:
//! a server whose configuration uses no XML then maps none of them (nor
//! ICU, libstdc++, libgcrypt, liblzma they pull in), about 2.3 MB of
//! resident memory in every process (docs/benchmarks.md).
//!
//! The functions the Rust side calls are declared once each in `sys.rs`
//! with [`library_functions!`], which makes a table of pointers resolved
//! when the libraries are loaded and a same-named `unsafe fn` wrapper for
//! each, so call sites read as calls of the C functions. The C shim
//! resolves its own through [`resolve`] (see `shim.c`).
//!
//! libc's `dlopen`/`dlsym` directly rather than the `libloading` crate:
//! the libraries are opened once and never closed, and the pointers live
//! in a `static` table, which is what libloading's lifetime-bound
//! `Symbol`s exist to prevent; what is left is three calls.

use std::ffi::{c_char, c_void, CStr, CString};
use std::sync::OnceLock;

/// One library: the soname Debian's runtime package installs, and that
/// package, for the error when it is missing.
pub(crate) struct Library {
    pub soname: &'static str,
    pub package: &'static str,
}

/// In dependency order: libxslt needs libxml2, libexslt both, so the
/// first that fails to open names the package to install.
pub(crate) const LIBRARIES: [Library; 3] = [
    Library {
        soname: "libxml2.so.2",
        package: "libxml2",
    },
    Library {
        soname: "libxslt.so.1",
        package: "libxslt1.1",
    },
    Library {
        soname: "libexslt.so.0",
        package: "libxslt1.1",
    },
];

/// A `dlopen` handle, never closed.
struct Handle(*mut c_void);

// SAFETY: a dlopen handle is a process-wide token; dlsym on it is
// thread-safe.
unsafe impl Send for Handle {}
unsafe impl Sync for Handle {}

static HANDLES: OnceLock<Vec<Handle>> = OnceLock::new();

/// The text of the last dl* failure on this thread.
fn dl_error() -> String {
    let e = unsafe { libc::dlerror() };
    if e.is_null() {
        "unknown dlopen error".to_string()
    } else {
        unsafe { CStr::from_ptr(e) }.to_string_lossy().into_owned()
    }
}

/// Open one library: `soname (Debian package P): dlerror` when it cannot
/// be. `RTLD_NOW`: a library missing a symbol it needs fails here, at
/// startup, not in the middle of a request.
pub(crate) fn open(lib: &Library) -> Result<*mut c_void, String> {
    let name = CString::new(lib.soname).expect("soname without NUL");
    let handle = unsafe { libc::dlopen(name.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(format!(
            "{} (Debian package {}): {}",
            lib.soname,
            lib.package,
            dl_error()
        ));
    }
    Ok(handle)
}

/// Open the three libraries (once; later calls do nothing).
pub(crate) fn open_all() -> Result<(), String> {
    if HANDLES.get().is_some() {
        return Ok(());
    }
    let handles = LIBRARIES
        .iter()
        .map(|lib| open(lib).map(Handle))
        .collect::<Result<Vec<_>, _>>()?;
    // Only `call::init`'s `Once` calls this: nobody races to set it.
    let _ = HANDLES.set(handles);
    Ok(())
}

/// The address of `name` (a function or a variable) in the first of the
/// loaded libraries that defines it; null when none does, or before
/// [`open_all`]. The C shim resolves its functions through this.
pub(crate) extern "C" fn resolve(name: *const c_char) -> *mut c_void {
    let Some(handles) = HANDLES.get() else {
        return std::ptr::null_mut();
    };
    handles
        .iter()
        .map(|h| unsafe { libc::dlsym(h.0, name) })
        .find(|p| !p.is_null())
        .unwrap_or(std::ptr::null_mut())
}

/// [`resolve`], failing with the name of what is missing.
pub(crate) fn symbol(name: &CStr) -> Result<*mut c_void, String> {
    let p = resolve(name.as_ptr());
    if p.is_null() {
        return Err(missing(&name.to_string_lossy()));
    }
    Ok(p)
}

/// The error for a function or variable the loaded libraries lack (an
/// older libxml2 than the engine was written against).
pub(crate) fn missing(name: &str) -> String {
    format!("{name} not found in the loaded libxml2/libxslt/libexslt")
}

/// Declare library functions the Rust side calls, once each, written as
/// in an `extern "C"` block (`pub fn name(arg: T, …) -> R;`). It makes:
/// - `Functions`, a table of their pointers, and `load()`, which
///   resolves them all in the loaded libraries (an error naming the first
///   missing one) and keeps the table for the process;
/// - for each, `pub unsafe fn name(…)`, calling through the table, so
///   call sites are unchanged from a linked declaration.
///
/// A wrapper called before [`load`] panics: every path to one starts at
/// an engine entry point, which loads first (or returns the error), or at
/// a value (a document) that only a loaded engine can make.
macro_rules! library_functions {
    ($(pub fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)?;)*) => {
        #[allow(non_snake_case)]
        pub(crate) struct Functions {
            $($name: unsafe extern "C" fn($($ty),*) $(-> $ret)?,)*
        }

        static FUNCTIONS: std::sync::OnceLock<Functions> = std::sync::OnceLock::new();

        /// Resolve every declared function (the libraries are open).
        pub(crate) fn load() -> Result<(), String> {
            let table = Functions {
                $($name: {
                    let p = $crate::dl::symbol(
                        // A literal: concat! of the name and a NUL.
                        std::ffi::CStr::from_bytes_with_nul(
                            concat!(stringify!($name), "\0").as_bytes(),
                        )
                        .expect("a C name"),
                    )?;
                    // SAFETY: the symbol is this function, declared with
                    // its C signature above.
                    unsafe {
                        std::mem::transmute::<
                            *mut std::ffi::c_void,
                            unsafe extern "C" fn($($ty),*) $(-> $ret)?,
                        >(p)
                    }
                },)*
            };
            let _ = FUNCTIONS.set(table);
            Ok(())
        }

        fn functions() -> &'static Functions {
            FUNCTIONS
                .get()
                .expect("axkit-xml: a libxml2/libxslt call before the libraries were loaded")
        }

        $(
            #[allow(non_snake_case, clippy::missing_safety_doc)]
            pub unsafe fn $name($($arg: $ty),*) $(-> $ret)? {
                unsafe { (functions().$name)($($arg),*) }
            }
        )*
    };
}

pub(crate) use library_functions;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_library_names_its_package_and_why() {
        let e = open(&Library {
            soname: "libaxkit-no-such-library.so.9",
            package: "libaxkit-none",
        })
        .unwrap_err();
        assert!(
            e.starts_with(
                "libaxkit-no-such-library.so.9 (Debian package libaxkit-none): \
                 libaxkit-no-such-library.so.9: cannot open shared object file"
            ),
            "{e}"
        );
    }
}
