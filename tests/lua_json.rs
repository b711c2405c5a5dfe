//! The `json` global through the stock `axkit` binary: documents that
//! round-trip exactly (empty arrays and objects, `null` inside arrays,
//! integers to 64 bits, floats, escapes), `json.null` and `json.array`,
//! object keys in a fixed order, and errors instead of silent loss (sparse
//! arrays, mixed keys, NaN and infinities, cycles, functions, strings that
//! are not UTF-8, malformed text), each naming where it is.
//!
//! Each test starts its own server (`--no-master`) with the script written
//! to its scratch directory; the request body is the JSON text to work on.

mod common;
#[path = "common/lua.rs"]
mod lua;

use common::*;
use lua::*;

const SCRIPT: &str = r#"
local cases = {
  sparse = function() local t = { 1, 2 } t[4] = 4 return t end,
  holes = function() return { [2] = "b" } end,
  zero = function() return { [0] = "a", [1] = "b" } end,
  mixed = function() return { 1, 2, name = "x" } end,
  nan = function() return { v = 0/0 } end,
  inf = function() return { list = { 1, math.huge } } end,
  cycle = function() local t = {} t.self = t return t end,
  func = function() return { f = print } end,
  bytes = function() return { s = "\xff" } end,
  floatkey = function() return { [1.5] = true } end,
  boolkey = function() return { [true] = 1 } end,
  marked = function() local t = json.array() t.x = 1 return t end,
  deep = function()
    local t = {}
    for _ = 1, 200 do t = { t } end
    return t
  end,
  nested = function() return { items = { { name = "a" }, { name = "b", bad = 0/0 } } } end,
}

function hook_response(r)
  local p = r:path()
  if p == "/roundtrip" then
    r:write(json.encode(json.decode(r:body())))
  elseif p == "/decode-error" then
    local ok, err = pcall(json.decode, r:body())
    r:write(tostring(ok), "|", tostring(err))
  elseif p == "/encode-error" then
    local ok, err = pcall(json.encode, cases[r:param("case")]())
    r:write(tostring(ok), "|", tostring(err))
  elseif p == "/values" then
    local v = json.decode('[null, 1, 1.0, 9223372036854775807, 9223372036854775808, [], {}, "\\u00e9"]')
    local out = {
      tostring(v[1] == json.null), tostring(#v),
      math.type(v[2]), math.type(v[3]), tostring(v[4] == math.maxinteger),
      math.type(v[5]), tostring(getmetatable(v[6])), tostring(next(v[7])), v[8],
      tostring(json.decode("null") == json.null),
      json.encode(json.array()), json.encode({}), json.encode(json.array({ 1, 2 })),
      json.encode({ b = 1, a = { 2, 3 }, c = json.null }), json.encode(nil),
      json.encode(math.mininteger), json.encode(0.1), json.encode(-0.0), json.encode(1e300),
      json.encode("tab\t\"quote\" </script> \0"),
    }
    r:write(table.concat(out, "|"))
  elseif p == "/array-keeps-its-kind" then
    local v = json.decode('{"tags": ["x"], "empty": []}')
    table.remove(v.tags)
    v.empty[1] = "now one"
    r:write(json.encode(v))
  elseif p == "/array-misuse" then
    local ok, err = pcall(json.array, setmetatable({}, {}))
    r:write(tostring(ok), "|", tostring(err):match("json%.array: [^\n]*"))
  end
  return OK
end
"#;

fn server() -> Axkit {
    start(&conf("", "    Plugin j"), &[("j", SCRIPT)])
}

#[test]
fn documents_round_trip_exactly() {
    let srv = server();
    for doc in [
        r#"{"a":[],"b":{},"c":null,"d":[1,null,3],"e":[[],[{}]]}"#,
        r#"[9223372036854775807,-9223372036854775808,9007199254740993,0,-1]"#,
        r#"[1.5,3.0,-0.0,1e+300,0.1,2.5e-8]"#,
        // A float the default parser reads one unit off in the last place.
        r#"[1.8446744073706981e+19]"#,
        r#"{"":"","k\"ey":"line\nbreak\u0000nul","é":"ü😀"}"#,
        r#"[true,false,null,"x",{"z":1,"a":2}]"#,
        r#"{}"#,
        r#"[]"#,
        r#"null"#,
        r#""text""#,
        r#"42"#,
    ] {
        let r = send(&srv, "POST", "/roundtrip", "", doc.as_bytes());
        assert_eq!(r.status, 200, "{doc}: {}", r.text());
        // Object keys come out in byte order.
        let want = doc.replace(r#"{"z":1,"a":2}"#, r#"{"a":2,"z":1}"#);
        assert_eq!(r.text(), want, "{doc}");
    }
}

#[test]
fn null_arrays_and_numbers_keep_their_kind() {
    let srv = server();
    assert_eq!(
        srv.get("/values").text(),
        [
            "true",
            "8",
            "integer",
            "float",
            "true",
            "float",
            "false",
            "nil",
            "é",
            "true",
            "[]",
            "{}",
            "[1,2]",
            r#"{"a":[2,3],"b":1,"c":null}"#,
            "null",
            "-9223372036854775808",
            "0.1",
            "-0.0",
            "1e+300",
            r#""tab\t\"quote\" </script> \u0000""#,
        ]
        .join("|")
    );
    // A decoded array stays an array when emptied, and an empty one
    // becomes a list when filled.
    assert_eq!(
        srv.get("/array-keeps-its-kind").text(),
        r#"{"empty":["now one"],"tags":[]}"#
    );
    assert_eq!(
        srv.get("/array-misuse").text(),
        "false|json.array: the table already has a metatable"
    );
}

#[test]
fn what_json_cannot_hold_is_an_error_naming_where() {
    let srv = server();
    for (case, want) in [
        ("sparse", "a sparse array (3 values, index 3 missing) at $"),
        ("holes", "a sparse array (1 values, index 1 missing) at $"),
        ("zero", "an array index 0 (arrays start at 1) at $"),
        ("mixed", "a table with both integer and string keys at $"),
        ("nan", "has no JSON form at $.v"),
        ("inf", "inf has no JSON form at $.list[2]"),
        ("cycle", "a table that contains itself at $.self"),
        ("func", "a function cannot be encoded at $.f"),
        ("bytes", "a string that is not UTF-8 at $.s"),
        ("floatkey", "the key 1.5 has no JSON form"),
        ("boolkey", "the key true has no JSON form"),
        ("marked", "an array (json.array) with string keys at $"),
        ("deep", "nested deeper than 128 tables"),
        ("nested", "has no JSON form at $.items[2].bad"),
    ] {
        let t = srv.get(&format!("/encode-error?case={case}")).text();
        assert!(
            t.starts_with("false|") && t.contains("json.encode: "),
            "{case}: {t}"
        );
        assert!(t.contains(want), "{case}: {want:?} not in {t}");
    }
    for (doc, want) in [
        ("[1,2", "EOF while parsing a list"),
        ("[1] x", "trailing characters at line 1 column 5"),
        ("{\"a\":}", "expected value at line 1 column 6"),
        ("\"\\ud800\"", "hex escape"),
        ("NaN", "expected value"),
        ("", "EOF while parsing a value"),
        (&"[".repeat(200), "recursion limit exceeded"),
    ] {
        let r = send(&srv, "POST", "/decode-error", "", doc.as_bytes());
        let t = r.text();
        assert!(
            t.starts_with("false|") && t.contains("json.decode: "),
            "{doc}: {t}"
        );
        assert!(t.contains(want), "{doc}: {want:?} not in {t}");
    }
}
