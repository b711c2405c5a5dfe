//! libxml2, libxslt and libexslt are loaded only where XML is used: the
//! binary does not link them (axkit-xml opens them when a plugin that
//! needs them is built), so a static-file server's master and workers map
//! none of them, and a worker of a config with the `xslt` plugin maps
//! them. Read from each process's /proc/PID/maps.

mod common;
#[path = "common/services.rs"]
mod services;
#[path = "common/xml.rs"]
mod xml;

use std::io::Write;

use common::*;

const LIBRARIES: [&str; 3] = ["libxml2.so", "libxslt.so", "libexslt.so"];

/// Which of [`LIBRARIES`] process `pid` maps.
fn mapped(pid: i32) -> Vec<&'static str> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap_or_else(|e| panic!("/proc/{pid}/maps: {e}"));
    LIBRARIES
        .into_iter()
        .filter(|lib| maps.contains(&format!("/{lib}")))
        .collect()
}

/// The worker that answered `path` on a connection kept open: it has
/// built its plugins.
fn answering_worker(srv: &Axkit, path: &str) -> i32 {
    let mut s = srv.connect();
    s.write_all(keep_alive_get(path).as_bytes()).unwrap();
    let r = read_one_response(&mut s).unwrap().expect("a response");
    assert_eq!(r.status, 200, "{path}: {}", r.text());
    srv.worker_serving(&s)
        .expect("the worker serving the connection")
}

#[test]
fn a_static_file_server_maps_no_xml_library() {
    let srv = Axkit::start_with(STATIC_CONF, &[], |d| {
        d.write("www/hello.txt", "hello\n");
    });
    let worker = answering_worker(&srv, "/hello.txt");
    assert_eq!(mapped(worker), Vec::<&str>::new(), "the worker");
    assert_eq!(mapped(srv.pid()), Vec::<&str>::new(), "the master");
}

#[test]
fn a_worker_with_the_xslt_plugin_maps_them() {
    let conf = xml::conf(
        "Workers 1",
        "    XSLTStyle page.xsl\n    XSLTStyle html.xsl",
    );
    let srv = Axkit::start_with(&conf, &[], |d| {
        xml::write_files(
            d,
            &[
                ("site/a.xml", xml::ARTICLE),
                ("site/page.xsl", xml::TO_PAGE),
                ("site/html.xsl", xml::TO_HTML),
            ],
        );
    });
    let worker = answering_worker(&srv, "/a.xml");
    assert_eq!(mapped(worker), LIBRARIES.to_vec(), "the worker");
    // The master builds no plugin: it loads nothing either.
    assert_eq!(mapped(srv.pid()), Vec::<&str>::new(), "the master");
}
