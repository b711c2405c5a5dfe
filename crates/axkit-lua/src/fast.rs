//! The methods of `r` that nearly every handler calls — `r:method()`,
//! `r:uri()`, `r:path()`, `r:query()`, `r:header(name)`, `r:param(name)`,
//! `r:config(name)`, `r:status([code])`, `r:set_header`, `r:add_header`
//! and `r:write(...)` — as plain Lua C functions.
//!
//! Why: through mlua's generic callbacks each call costs about 0.3 µs
//! (checking the userdata's type through its metatable, converting the
//! arguments into Rust values and `String`s, the error protocol), which
//! in a hello handler was a third of the Lua time. Here a method reads
//! its arguments straight off the Lua stack, recognises `r` by its
//! number (that of the request whose hook is being polled, see
//! [`with_polled`]), and pushes its result; rare cases (`r:param` with a
//! parsed form, `r:config` on a first use) call a regular mlua function
//! held as the C function's upvalue.
//!
//! Raising a Lua error is a `longjmp` over the Rust frames in between,
//! which must then hold nothing to drop or release (a `String`, the hold
//! on the request's context). Lua raises one too where it cannot allocate
//! (beyond `LuaMemoryLimit`): in a push, in converting a number to a
//! string. So every method runs in [`run`]: a body only reads the stack
//! and decides; `run` converts number arguments before it and pushes its
//! result or raises its error after it, once all of its values are gone,
//! an owned string through a protected call (which catches the memory
//! error, so that the string is still freed).

use std::borrow::Cow;
use std::cell::RefCell;
use std::ffi::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use axkit::plugin::HeaderValue;
use axkit::Context;
use mlua::ffi::{self, lua_State};
use mlua::{Function, Lua, Table, Value};

use crate::directives;
use crate::request::{polled_slot, with_polled, with_polled_slot, Slot, FLUSH_AT, OUTSIDE};

/// What a method's body decided.
enum Done {
    /// That many results are on the stack.
    Results(c_int),
    /// Return this string of the request (or nil). It stays where it is
    /// until the hook's poll ends, and Lua copies it before anything else
    /// can run, so [`run`] pushes it after the body let go of the request.
    Request(Option<*const [u8]>),
    /// Return this string, made for this call.
    Owned(String),
    /// Call the upvalue-1 function with the same arguments instead.
    Fallback,
}

type Outcome = Result<Done, Cow<'static, str>>;

/// The stack of one call of a method, with its string arguments 2 and 3
/// as [`run`] read them (when it was asked to).
struct Call(*mut lua_State, [Arg; 2]);

/// A string argument as [`run`] read it.
#[derive(Clone, Copy)]
enum Arg {
    /// Not read (not one of the method's string arguments).
    Unread,
    /// Neither a string nor a number.
    NotString,
    /// The bytes of a string on the call's stack (a number converted).
    Str(*const u8, usize),
}

impl Call {
    /// Argument `i` as bytes: a string, or a number converted as Lua does.
    fn str(&self, i: c_int, what: &str) -> Result<&[u8], Cow<'static, str>> {
        self.opt_str(i)
            .ok_or_else(|| format!("bad argument #{} ({what}): expected a string", i - 1).into())
    }

    /// Argument `i` as bytes, or `None` if it is not a string (or a number
    /// that [`run`] converted).
    fn opt_str(&self, i: c_int) -> Option<&[u8]> {
        let read = usize::try_from(i - 2)
            .ok()
            .and_then(|k| self.1.get(k).copied());
        // SAFETY: the value is a string (reading it allocates nothing) and
        // stays on this call's stack, and with it its bytes, until the
        // method returns.
        unsafe {
            match read.unwrap_or(Arg::Unread) {
                Arg::Str(p, len) => Some(std::slice::from_raw_parts(p, len)),
                Arg::NotString => None,
                Arg::Unread => {
                    if ffi::lua_type(self.0, i) != ffi::LUA_TSTRING {
                        return None;
                    }
                    let mut len = 0;
                    let p = ffi::lua_tolstring(self.0, i, &mut len);
                    Some(std::slice::from_raw_parts(p.cast(), len))
                }
            }
        }
    }

    /// Argument `i` as UTF-8 text.
    fn text(&self, i: c_int, what: &str) -> Result<&str, Cow<'static, str>> {
        utf8(self.str(i, what)?, i, what)
    }

    /// The number `r` (argument 1) holds; 0 or an address, which no
    /// request's number is, for anything else (see `Host::next_request`).
    fn object(&self) -> usize {
        // SAFETY: reading a value on this call's stack.
        unsafe { ffi::lua_touserdata(self.0, 1) as usize }
    }

    /// With the request, if argument 1 is the `r` of the running hook.
    fn request<R>(&self, f: impl FnOnce(&Slot, &mut Context) -> R) -> Result<R, Cow<'static, str>> {
        with_polled(self.object(), f).ok_or(Cow::Borrowed(OUTSIDE))
    }
}

/// A string of the request as the method's result.
fn request_str(s: Option<&str>) -> Done {
    Done::Request(s.map(|s| std::ptr::from_ref(s.as_bytes())))
}

/// Run a method's body and turn its outcome into what Lua expects; see the
/// module doc for why only this pushes and raises. Arguments `strings`
/// (2 or 3), if numbers, are converted to strings first, and read once
/// for the body.
///
/// # Safety
/// `l` is the state of a running C function; `body` owns nothing to drop
/// (converting an argument may raise a memory error before it runs).
unsafe fn run(
    l: *mut lua_State,
    name: &str,
    strings: &[c_int],
    body: impl FnOnce(&Call) -> Outcome,
) -> c_int {
    /// What is left to do once every Rust value of the body is dropped.
    enum Next {
        Return(c_int),
        Push(Option<*const [u8]>),
        Fallback,
        Raise,
    }
    let nargs = ffi::lua_gettop(l);
    let mut args = [Arg::Unread; 2];
    for &i in strings {
        let mut len = 0;
        // A number is converted in place, as luaL_checklstring does.
        let p = ffi::lua_tolstring(l, i, &mut len);
        args[(i - 2) as usize] = if p.is_null() {
            Arg::NotString
        } else {
            Arg::Str(p.cast(), len)
        };
    }
    let next = match catch_unwind(AssertUnwindSafe(|| body(&Call(l, args)))) {
        Ok(Ok(Done::Results(n))) => Next::Return(n),
        Ok(Ok(Done::Request(s))) => Next::Push(s),
        Ok(Ok(Done::Owned(s))) => {
            if push_protected(l, s.as_bytes()) {
                Next::Return(1)
            } else {
                Next::Raise
            }
        }
        Ok(Ok(Done::Fallback)) => Next::Fallback,
        failed => {
            let message = match failed {
                Ok(Err(e)) => format!("r:{name}: {e}"),
                _ => format!("r:{name}: internal error"),
            };
            // Failing to push it leaves the memory error to raise instead.
            push_protected(l, message.as_bytes());
            Next::Raise
        }
    };
    // All of these may leave by a longjmp.
    match next {
        Next::Return(n) => n,
        Next::Push(Some(s)) => {
            ffi::lua_pushlstring(l, (*s).as_ptr().cast(), s.len());
            1
        }
        Next::Push(None) => {
            ffi::lua_pushnil(l);
            1
        }
        Next::Fallback => {
            ffi::lua_settop(l, nargs);
            ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
            ffi::lua_insert(l, 1);
            ffi::lua_call(l, nargs, ffi::LUA_MULTRET);
            ffi::lua_gettop(l)
        }
        Next::Raise => ffi::lua_error(l),
    }
}

/// Push `s` in a protected call: true if it is on the stack, false if that
/// failed and the error is there instead.
///
/// # Safety
/// `l` is the state of a running C function with two free stack slots.
unsafe fn push_protected(l: *mut lua_State, s: &[u8]) -> bool {
    unsafe extern "C-unwind" fn push(l: *mut lua_State) -> c_int {
        // SAFETY: the argument is the slice `push_protected` borrowed.
        unsafe {
            let s = &*ffi::lua_touserdata(l, 1).cast::<&[u8]>();
            ffi::lua_pushlstring(l, s.as_ptr().cast(), s.len());
        }
        1
    }
    ffi::lua_pushcfunction(l, push);
    ffi::lua_pushlightuserdata(l, std::ptr::from_ref(&s).cast_mut().cast());
    ffi::lua_pcall(l, 1, 1, 0) == ffi::LUA_OK
}

/// Define `unsafe extern "C-unwind" fn NAME(l)` running BODY (a closure
/// taking the [`Call`]) through [`run`], with its string arguments (the
/// numbers in parentheses).
macro_rules! methods {
    ($($name:ident($($string:literal),*) => $body:expr;)*) => {
        $(
            unsafe extern "C-unwind" fn $name(l: *mut lua_State) -> c_int {
                let body = $body;
                // SAFETY: Lua calls this as a C function.
                unsafe { run(l, stringify!($name), &[$($string),*], body) }
            }
        )*
    };
}

methods! {
    method() => |c: &Call| c.request(|_, ctx| request_str(Some(ctx.request.method())));
    uri() => |c: &Call| c.request(|_, ctx| request_str(Some(ctx.request.uri())));
    path() => |c: &Call| c.request(|_, ctx| request_str(Some(ctx.request.decoded_path())));
    query() => |c: &Call| c.request(|_, ctx| request_str(ctx.request.query()));
    header(2) => |c: &Call| {
        let name = c.text(2, "name")?;
        c.request(|_, ctx| request_str(ctx.request.header(name)))
    };
    // The query string first (AxKit2's param()), then the form once
    // `r:form()` has parsed it (upvalue 1 looks there).
    param(2) => |c: &Call| {
        let name = c.text(2, "name")?;
        c.request(|slot, ctx| {
            match ctx.request.param(name) {
                Some(Cow::Borrowed(v)) => request_str(Some(v)),
                Some(Cow::Owned(v)) => Done::Owned(v),
                None if slot.form.borrow().is_some() => Done::Fallback,
                None => request_str(None),
            }
        })
    };
    // Upvalue 2 caches the values as Lua values per Location config (keyed
    // by its address: a worker's Location configs live as long as the
    // worker): `cache[config][name]`; upvalues 3 and 4 are the last
    // config's key and its table, which the next call most likely wants.
    // Anything not cached yet, or not cacheable (tables, nil, errors),
    // goes to upvalue 1.
    config() => |c: &Call| {
        let config = c.request(|_, ctx| config_key(ctx))?;
        // SAFETY: at most four pushes; `rawget` on tables raises no error,
        // and neither do pushing a light userdata and copying values into
        // upvalues (no allocation).
        unsafe {
            if ffi::lua_type(c.0, 2) != ffi::LUA_TSTRING {
                return Ok(Done::Fallback);
            }
            let values = if ffi::lua_touserdata(c.0, ffi::lua_upvalueindex(3)).cast_const() == config {
                ffi::lua_upvalueindex(4)
            } else if ffi::lua_rawgetp(c.0, ffi::lua_upvalueindex(2), config) == ffi::LUA_TTABLE {
                ffi::lua_pushvalue(c.0, -1);
                ffi::lua_replace(c.0, ffi::lua_upvalueindex(4));
                ffi::lua_pushlightuserdata(c.0, config.cast_mut());
                ffi::lua_replace(c.0, ffi::lua_upvalueindex(3));
                ffi::lua_absindex(c.0, -1)
            } else {
                return Ok(Done::Fallback);
            };
            ffi::lua_pushvalue(c.0, 2);
            if ffi::lua_rawget(c.0, values) != ffi::LUA_TNIL {
                return Ok(Done::Results(1));
            }
        }
        Ok(Done::Fallback)
    };
    status() => |c: &Call| {
        let mut isnum = 0;
        // SAFETY: reading argument 2.
        let n = unsafe { ffi::lua_tointegerx(c.0, 2, &mut isnum) };
        let status = if isnum != 0 {
            Some(u16::try_from(n).map_err(|_| "bad argument #1 (status): out of range")?)
        } else if unsafe { ffi::lua_isnoneornil(c.0, 2) } != 0 {
            None
        } else {
            return Err("bad argument #1 (status): expected an integer".into());
        };
        let status = c.request(|_, ctx| {
            if let Some(s) = status {
                ctx.response.status = s;
            }
            ctx.response.status
        })?;
        // SAFETY: one push, which allocates nothing.
        unsafe { ffi::lua_pushinteger(c.0, status.into()) };
        Ok(Done::Results(1))
    };
    set_header(2, 3) => |c: &Call| {
        let (name, value) = header_args(c)?;
        c.request(|_, ctx| ctx.response.headers.set(name, value))?;
        Ok(Done::Results(0))
    };
    add_header(2, 3) => |c: &Call| {
        let (name, value) = header_args(c)?;
        c.request(|_, ctx| ctx.response.headers.add(name, value))?;
        Ok(Done::Results(0))
    };
}

/// `r:write(...)`: the arguments converted to strings as `print` does and
/// appended to the output; once the buffer is full, `r:flush()` (upvalue
/// 1, an mlua async function) is called to send it, with a continuation
/// so that it may suspend the hook. The conversion may run a `__tostring`
/// metamethod and allocates, either of which may raise an error, so it is
/// done before any Rust state exists; it also notes where the bytes of
/// the first [`PARTS`] arguments are (strings on this call's stack, which
/// neither move nor go away before it returns).
unsafe extern "C-unwind" fn write(l: *mut lua_State) -> c_int {
    /// What runs when the flush returns, also after suspending.
    unsafe extern "C-unwind" fn flushed(
        _: *mut lua_State,
        _: c_int,
        _: ffi::lua_KContext,
    ) -> c_int {
        0
    }
    // SAFETY: Lua calls this as a C function; `luaL_tolstring` pushes one
    // value, which `lua_replace` pops.
    unsafe {
        let top = ffi::lua_gettop(l);
        let mut parts = [(std::ptr::null::<u8>(), 0); PARTS];
        let mut len = 0;
        for i in 2..=top {
            let mut n = 0;
            // A string as it is, a number converted in place (as print
            // converts it); anything else through its __tostring.
            let mut p = ffi::lua_tolstring(l, i, &mut n);
            if p.is_null() {
                ffi::luaL_tolstring(l, i, std::ptr::null_mut());
                ffi::lua_replace(l, i);
                p = ffi::lua_tolstring(l, i, &mut n);
            }
            if let Some(part) = parts.get_mut((i - 2) as usize) {
                *part = (p.cast(), n);
            }
            len += n;
        }
        // Nothing here can fail or unwind (but an allocation, which
        // aborts), so no `run` around it unless `r` is not the request's.
        let object = ffi::lua_touserdata(l, 1) as usize;
        let full = with_polled_slot(object, |slot| {
            let mut out = slot.out.borrow_mut();
            // One allocation for the usual single write.
            out.reserve(len);
            for i in 2..=top {
                let (p, n) = match parts.get((i - 2) as usize) {
                    Some(&part) => part,
                    None => {
                        let mut n = 0;
                        (ffi::lua_tolstring(l, i, &mut n).cast(), n)
                    }
                };
                out.extend_from_slice(std::slice::from_raw_parts(p, n));
            }
            out.len() >= FLUSH_AT
        });
        match full {
            Some(false) => return 0,
            Some(true) => {}
            None => return run(l, "write", &[], |_| Err(OUTSIDE.into())),
        }
        ffi::lua_settop(l, 1);
        ffi::lua_pushvalue(l, ffi::lua_upvalueindex(1));
        ffi::lua_insert(l, 1);
        ffi::lua_callk(l, 1, 0, 0, Some(flushed));
        flushed(l, ffi::LUA_OK, 0)
    }
}

/// How many arguments of `r:write` are read once (the rest twice).
const PARTS: usize = 8;

/// The common header names, so that setting them allocates no name.
const HEADER_NAMES: &[&str] = &[
    "Content-Type",
    "Cache-Control",
    "Location",
    "Set-Cookie",
    "Last-Modified",
    "ETag",
    "Expires",
    "Content-Disposition",
];

/// Argument `i` (`bytes`) as UTF-8 text.
fn utf8<'a>(bytes: &'a [u8], i: c_int, what: &str) -> Result<&'a str, Cow<'static, str>> {
    // Names and values are short and nearly always ASCII, which this loop
    // checks faster than the general validation starts up.
    if bytes.iter().all(u8::is_ascii) {
        // SAFETY: ASCII is UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes)
        .map_err(|_| format!("bad argument #{} ({what}): not UTF-8", i - 1).into())
}

/// How many header values [`shared_value`] keeps, and the longest.
const SHARED_VALUES: usize = 8;
const SHARED_VALUE_MAX: usize = 64;

/// Header values scripts set lately, round-robin.
struct SharedValues {
    values: Vec<HeaderValue>,
    next: usize,
}

thread_local! {
    static SHARED: RefCell<SharedValues> = const {
        RefCell::new(SharedValues { values: Vec::new(), next: 0 })
    };
}

/// A header value as the response keeps it: a script sets the same few
/// values on every request (`Content-Type: text/html`), so a short one
/// is shared with those set lately, which costs a reference count where
/// a `String` cost an allocation, a copy, a UTF-8 check and a free. Kept
/// per thread (a worker's one Lua state), by content, and checked for the
/// wire once, as it is kept ([`HeaderValue::checked`]): the response then
/// takes it without looking at its bytes again. A value the response
/// refuses is kept unchecked, and refused as it is set, as before.
fn shared_value(bytes: &[u8]) -> Result<HeaderValue, Cow<'static, str>> {
    if bytes.len() > SHARED_VALUE_MAX {
        return Ok(HeaderValue::Shared(utf8(bytes, 3, "value")?.into()));
    }
    SHARED.with(|shared| {
        let mut shared = shared.borrow_mut();
        if let Some(v) = shared.values.iter().find(|v| v.as_bytes() == bytes) {
            return Ok(v.clone());
        }
        let v: Arc<str> = utf8(bytes, 3, "value")?.into();
        let v = HeaderValue::checked(v.clone()).unwrap_or(HeaderValue::Shared(v));
        let next = shared.next;
        if next < shared.values.len() {
            shared.values[next] = v.clone();
        } else {
            shared.values.push(v.clone());
        }
        shared.next = (next + 1) % SHARED_VALUES;
        Ok(v)
    })
}

/// `(name, value)` of `r:set_header`/`r:add_header`; the value may be a
/// number.
fn header_args(c: &Call) -> Result<(Cow<'static, str>, HeaderValue), Cow<'static, str>> {
    let name = c.str(2, "name")?;
    let name = match HEADER_NAMES.iter().find(|n| n.as_bytes() == name) {
        Some(n) => Cow::Borrowed(*n),
        None => Cow::Owned(utf8(name, 2, "name")?.to_string()),
    };
    let value = shared_value(c.str(3, "value")?)?;
    Ok((name, value))
}

/// The cache key of the request's Location config.
fn config_key(ctx: &Context) -> *const c_void {
    std::ptr::from_ref(ctx.config()).cast()
}

/// Add the methods of this module to those of `r` (after `r:flush`, which
/// `r:write` calls).
pub(crate) fn install(lua: &Lua, methods: &Table) -> mlua::Result<()> {
    let plain: [(&str, ffi::lua_CFunction); 8] = [
        ("method", method),
        ("uri", uri),
        ("path", path),
        ("query", query),
        ("header", header),
        ("status", status),
        ("set_header", set_header),
        ("add_header", add_header),
    ];
    for (name, f) in plain {
        // SAFETY: these functions follow the Lua C API contract.
        methods.raw_set(name, unsafe { lua.create_c_function(f) }?)?;
    }
    let form_param = lua.create_function(|_, (r, name): (Value, String)| {
        let slot = polled_slot(&r)?;
        let form = slot.form.borrow();
        // A file field is no parameter.
        match form.as_ref().map(|f| f.get::<Value>(name)).transpose()? {
            Some(Value::String(v)) => Ok(Some(v)),
            _ => Ok(None),
        }
    })?;
    methods.raw_set("param", closure(lua, param, form_param)?)?;
    let cache = lua.create_table()?;
    let config_slow = {
        let cache = cache.clone();
        lua.create_function(move |lua, (r, name): (Value, String)| {
            let (value, key) = with_polled(r.to_pointer() as usize, |_, c| {
                (
                    directives::config_value(lua, c.config(), &name),
                    config_key(c),
                )
            })
            .ok_or_else(|| mlua::Error::runtime(OUTSIDE))?;
            let value = value?;
            if !matches!(value, Value::Table(_) | Value::Nil) {
                let key = Value::LightUserData(mlua::LightUserData(key.cast_mut()));
                let values = match cache.raw_get::<Option<Table>>(&key)? {
                    Some(t) => t,
                    None => {
                        let t = lua.create_table()?;
                        cache.raw_set(key, &t)?;
                        t
                    }
                };
                values.raw_set(name, &value)?;
            }
            Ok(value)
        })?
    };
    // Upvalues 3 and 4 (the last config's key and table) start as nil.
    let config = closure(lua, config, (config_slow, cache, Value::Nil, Value::Nil))?;
    methods.raw_set("config", config)?;
    let flush = methods.raw_get::<Function>("flush")?;
    let write = closure(lua, write, flush)?;
    methods.raw_set("write", write)
}

/// A C closure of `f` with `upvalues` (the fallback function first).
fn closure(
    lua: &Lua,
    f: ffi::lua_CFunction,
    upvalues: impl mlua::IntoLuaMulti,
) -> mlua::Result<Function> {
    let upvalues = upvalues.into_lua_multi(lua)?;
    let n = upvalues.len() as c_int;
    // SAFETY: pushes a closure over the values exec_raw put on the stack.
    unsafe {
        lua.exec_raw(upvalues, |l| {
            ffi::lua_pushcclosure(l, f, n);
        })
    }
}
